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
 */
export const NODE_FLAGS: readonly string[] = ['--initial-old-space-size=128']
