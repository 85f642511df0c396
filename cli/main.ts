/**
 * `berth <command>`: one binary for every role. Each command module is loaded
 * only when used, so `berth meta` never loads the FUSE binding.
 */
import { argvHasSecrets, maskArgv, maskSecrets } from '../common/mask-secrets'

interface Command {
  run(argv: string[]): Promise<void>
}

const COMMANDS: Record<string, { summary: string; load: () => Command }> = {
  up: { summary: 'start a local cluster (nats-server, meta, data nodes) and mount it', load: () => require('./up') as Command },
  'init-cluster': { summary: 'write nats.conf and per-role env files for a multi-host cluster, start nothing', load: () => require('./init-cluster') as Command },
  meta: {
    summary: 'run the metadata service; or: berth meta dump|load, also named backup|restore (backup and restore of the namespace)',
    load: () => ({ run: (argv) => ((require('./meta-dump') as typeof import('./meta-dump')).isDumpOrLoad(argv) ? (require('./meta-dump') as Command) : (require('../meta/main') as Command)).run(argv) }),
  },
  node: {
    summary: 'run a data node; or: berth node drain|undrain|decommission|forget ID',
    load: () => ({ run: (argv) => ((require('./node-admin') as typeof import('./node-admin')).isNodeAdmin(argv) ? (require('./node-admin') as Command) : (require('../node/main') as Command)).run(argv) }),
  },
  mount: { summary: 'mount a cluster: berth mount NATS_URL MOUNTPOINT [-o opts]', load: () => require('../client/main') as Command },
  umount: { summary: 'unmount (EBUSY while in use; -l: lazily): berth umount [-l] MOUNTPOINT', load: () => require('../client/umount') as Command },
  status: { summary: 'show nodes, capacity, under-replicated blocks and sessions', load: () => require('./status') as Command },
  fsck: { summary: 'check that every block is on its replicas with the right content', load: () => require('./fsck') as Command },
  info: { summary: 'show a file\'s inode, chunks, blocks and where their replicas live: berth info PATH...', load: () => require('./info') as Command },
  gc: { summary: 'show what block GC and orphan collection would reclaim; --run to run a pass now', load: () => require('./gc') as Command },
  warmup: { summary: 'read files through their mount so later reads are cached: berth warmup PATH...', load: () => require('./warmup') as Command },
  bench: { summary: 'run the same workloads on a berth mount and a local directory and print the ratio', load: () => require('./bench') as Command },
}

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(12)} ${c.summary}`)
  return `usage: berth <command> [options]\n\ncommands:\n${lines.join('\n')}\n\n` +
    'Run `berth <command> --help` for its options; `berth --version` for the version.\n' +
    'Exit status: 0 success, 1 failure (the reason on stderr), 2 bad usage.\n'
}

/** Mistyped flags are usage errors (exit 2), like a missing command. */
function isUsageError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')
}

export async function main(argv: string[]): Promise<void> {
  // `ps` shows /proc/PID/cmdline: hide passwords given in a URL or --pass
  if (argvHasSecrets(argv)) process.title = ['berth', ...maskArgv(argv)].join(' ')
  const [name, ...rest] = argv
  if (!name) {
    // no command is a usage error: scripts must not mistake it for success
    process.stderr.write(usage())
    process.exitCode = 2
    return
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage())
    return
  }
  if (name === '--version' || name === '-V' || name === 'version') {
    process.stdout.write((require('./version') as typeof import('./version')).versionLine())
    return
  }
  const cmd = COMMANDS[name]
  if (!cmd) {
    process.stderr.write(`berth: unknown command "${name}"\n\n${usage()}`)
    process.exitCode = 2
    return
  }
  try {
    await cmd.load().run(rest)
  } catch (err) {
    process.stderr.write(maskSecrets(`berth ${name}: ${err instanceof Error ? err.message : String(err)}\n`))
    if (process.env.BERTH_LOG === 'debug' && err instanceof Error) process.stderr.write(maskSecrets(`${err.stack}\n`))
    if (isUsageError(err)) process.stderr.write(`run \`berth ${name} --help\` for its options\n`)
    const code = isUsageError(err) ? 2 : 1
    process.exitCode = code
    // A failed command must end now: a NATS connection or timer left open by
    // the failing path would otherwise keep the process (and a mount daemon) alive.
    setTimeout(() => process.exit(code), 200).unref()
  }
}
