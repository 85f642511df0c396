import { setFlagsFromString } from 'node:v8'

/**
 * V8 flags every long-running berth process runs with: `berth up`'s children
 * (cli/spawn-service.ts), the mount daemon `berth mount` starts
 * (client/main.ts), and any `berth` run through bin/berth.js's `#!` line,
 * which repeats them (test/node-flags.test.ts keeps the two equal).
 *
 * --initial-old-space-size: a data node, a mount and meta move block bodies
 * through Buffers (socket reads, a block gathered whole, the client's chunk
 * buffers), megabytes per block. With V8's default starting limit, a mount
 * reading 512 MiB cold ran 41 full mark-compacts, one per ~12 MiB read, each
 * freeing about 1 MB of a 22 MB heap. Starting the old generation at 128 MB,
 * it runs 10. Builds alternated (docs/bench.md, "V8's starting old-space
 * limit"): a 512 MiB sequential write took 15-20 % less CPU in all (nodes'
 * user time 3.9-4.0 s against 5.1-5.6, the mount's 2.4-2.5 against
 * 3.3-3.7) and ran 78-81 MB/s against 63-69; a cold read took 25-30 % less
 * CPU in the mount, its bottleneck. The cost is garbage kept longer: the
 * mount's peak RSS over that write and read went from 412 to 455 MB. Node refuses this flag in NODE_OPTIONS, so it goes on the command
 * line. BERTH_NODE_ARGS adds more for profiling (spawn-service).
 *
 * --no-memory-reducer: when a process goes idle, V8's memory reducer runs
 * collections that shrink its heap and lower its heap limits back toward the
 * live size. The next burst then runs with a small heap (collections more
 * often) until the limits grow again: the mount took 18-20 % more CPU per
 * create in the 5,000 creates after 150 s of idle than in the rounds run
 * back to back in the same cluster, meta 14-16 % more, and the rate fell by
 * about 10 % (three clusters without the flag, one of them with
 * --no-flush-bytecode: 653-750 files/s after the pause against 737-847 back
 * to back). With the flag (two clusters, one also with --no-flush-bytecode)
 * the same protocol gave 793-862 after the pause against 781-856 back to
 * back, and one slow round of 669 (docs/bench.md, "V8's memory reducer after
 * an idle pause"). A mount serves bursts between pauses (a build, a
 * checkout, a benchmark's step after another target's), so the pause must
 * not cost the next burst. The cost: an idle mount keeps the heap
 * it had (about 37 MB of RSS more than after the reducer ran); meta's RSS was
 * the same either way. V8 still collects as usual while the process
 * allocates. --no-flush-bytecode alone (bytecode of functions not run
 * recently) left most of the pause's cost (mount +18 %), so it is not set.
 * An earlier trial of both flags (docs/bench.md, "The V8 flags against an
 * idle pause, alternated") compared fresh clusters, whose spread (15 %) hid
 * the effect; this one compares rounds within one cluster.
 */
export const NODE_FLAGS: readonly string[] = ['--initial-old-space-size=128', '--no-memory-reducer']

/**
 * A data node keeps WebAssembly on V8's baseline compiler (Liftoff). Its only
 * WebAssembly is undici's HTTP parser (llhttp), which parses the replies to a
 * node's own requests: the next replica's answer to a forwarded block, a
 * repair copy's headers. A few hundred of those tier the parser up to
 * TurboFan, which compiles it on a background thread for about 80-100 ms of
 * CPU per process, competing with the data path on a small host; Liftoff's
 * code parses a reply a few microseconds slower, nothing beside a 4 MiB
 * block. Measured on a fresh cluster's first 1 GiB written, three
 * alternations: the three nodes took 0.13-0.33 CPU-s less (docs/bench.md,
 * "llhttp kept on Liftoff in data nodes"). Set at run time, before undici
 * compiles the parser (it does so at its first connection), so that only a
 * data node is affected: the #! line is shared by every command.
 */
export function wasmBaselineOnly(): void {
  setFlagsFromString('--liftoff-only')
}

/**
 * glibc's malloc settings for the mount process, given in its environment
 * (GLIBC_TUNABLES is read at process start): 4 MiB chunk buffers come from
 * the heap instead of a fresh mmap each (mmap_threshold), and freed memory
 * stays for the next one instead of going back to the kernel (trim_threshold).
 * Touching fresh pages is what costs on a VM: a mount writing 512 MiB took
 * 156-161k page faults, 102k with these, and 19 % less CPU (docs/bench.md,
 * "glibc malloc settings for the mount"). The cost: memory the mount's
 * garbage collector frees stays in its RSS for the next buffers (up to 256
 * MiB), so RSS stays near its high-water mark after a burst (the client-memory
 * test's peaks: 289-312 MiB against 249-262, under its 384 MiB cap). Other
 * roles gained nothing measurable and keep glibc's defaults. Appended to a
 * GLIBC_TUNABLES already set, so a user's own settings stay.
 */
export const MOUNT_MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456'

/** GLIBC_TUNABLES each berth command starts with; commands not named keep glibc's defaults. */
const TUNABLES_BY_COMMAND: ReadonlyMap<string, string> = new Map([['mount', MOUNT_MALLOC_TUNABLES]])

/**
 * The environment `berth COMMAND` is started with (by `berth up`, a test, or
 * the mount's own daemonizing): `env` plus that command's GLIBC_TUNABLES.
 */
export function serviceEnv(command: string | undefined, env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  // a Map, not an object: an argument like "constructor" must not find Object's own keys
  const tunables = command === undefined ? undefined : TUNABLES_BY_COMMAND.get(command)
  if (!tunables) return env
  const own = env.GLIBC_TUNABLES
  return { ...env, GLIBC_TUNABLES: own ? `${own}:${tunables}` : tunables }
}
