/**
 * `berth mount NATS_URL MOUNTPOINT`: connect, say hello to meta, open a
 * session, mount, serve until SIGTERM/SIGINT or `berth umount`, then flush
 * dirty data, unmount and end the session.
 *
 * Without --foreground the command re-runs itself detached with --foreground
 * and returns once that child reports ready (the mount answers), so scripts,
 * fstab and systemd can rely on the exit status.
 */
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { openSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { NatsConnection, Subscription } from 'nats'
import { BlockClient } from '../common/block-client'
import { PinnedBlocks } from './pinned-blocks'
import { BerthError } from '../common/errors'
import { emitEvent, logger } from '../common/log'
import { MetaClient } from '../common/meta-client'
import { NODE_FLAGS, serviceEnv } from '../common/node-flags'
import { setKernelReadahead } from './kernel-readahead'
import { serveMetrics } from '../common/metrics-http'
import { connectNats } from '../common/nats-connect'
import type { Invalidation } from '../common/protocol'
import { decode, subjects } from '../common/wire'
import { HELP, META_CACHE_TTL_OLD_META_S, META_CACHE_TTL_S, metaTtlMs, parseMountArgs, type MountConfig } from './config'
import { FuseSession } from './fuse-adapter'
import { lazyUnmount, mountDevice, removePid, writePid } from './mount-state'
import { checkMountpoint } from './mountpoint-check'
import { maskSecrets, splitUrlCredentials } from '../common/mask-secrets'
import { createClientMetrics } from './metrics'
import { Vfs } from './vfs'
import type { MetaApi } from './stores'
import { SessionLease } from './session-lease'
import { deliveredSoFar, onReconnect } from '../common/nats-state'

const log = logger('client')

export async function run(argv: string[]): Promise<void> {
  const cfg = parseMountArgs(argv)
  if (!cfg) {
    process.stdout.write(HELP)
    return
  }
  if (!cfg.foreground) return daemonize(cfg)
  try {
    await mountForeground(cfg)
  } catch (err) {
    // the daemonizing parent (or a supervisor) reads this instead of a log file
    const e = err as { code?: unknown; message?: unknown }
    emitEvent('failed', { role: 'client', mountpoint: cfg.mountpoint, code: String(e.code ?? 'EIO'), message: maskSecrets(String(e.message ?? err)) })
    throw err
  }
}

/** Re-runs `berth mount ... --foreground` detached; resolves once it is ready. */
async function daemonize(cfg: MountConfig): Promise<void> {
  // fail here, in milliseconds, for a bad mountpoint; the daemon checks again
  const checked = checkMountpoint(cfg.mountpoint, { nonempty: cfg.nonempty })
  if (checked.cleanedStale) process.stderr.write(`berth mount: detached a crashed mount at ${cfg.mountpoint}\n`)
  const logPath = join(tmpdir(), `berth-mount-${process.getuid?.() ?? 0}-${Date.now()}.log`)
  const errFd = openSync(logPath, 'a', 0o600)
  const bin = join(__dirname, '..', '..', 'bin', 'berth.js')
  // Secrets go to the daemon through its environment, never its argv (ps shows argv).
  const d = daemonArgs(cfg)
  const child = spawn(process.execPath, [...NODE_FLAGS, bin, 'mount', ...d.argv, '--foreground'], {
    detached: true,
    stdio: ['ignore', 'pipe', errFd],
    env: serviceEnv('mount', { ...process.env, ...d.env }),
  })
  const failure = await new Promise<string | null>((resolve) => {
    let out = ''
    let failed: string | null = null
    // a safety net only: the daemon gives up by itself well before this
    const timer = setTimeout(() => {
      failed = `the mount daemon (pid ${child.pid}) was not ready within ${DAEMON_READY_MS / 1000} s; stopped it`
      child.kill('SIGKILL')
      lazyUnmount(cfg.mountpoint)
    }, DAEMON_READY_MS)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      resolve(failed ?? `the mount daemon exited (${code ?? signal}) before the mount was ready`)
    })
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (chunk: string) => {
      out += chunk
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue
        let ev: { event?: unknown; message?: unknown }
        try {
          ev = JSON.parse(line) as { event?: unknown; message?: unknown }
        } catch {
          continue
        }
        if (ev.event === 'failed') failed = String(ev.message)
        if (ev.event === 'ready') {
          clearTimeout(timer)
          child.removeAllListeners('exit')
          resolve(null)
        }
      }
    })
  })
  if (failure !== null) throw new BerthError('EIO', `${failure}\n  (daemon log: ${logPath})`)
  child.stdout?.destroy()
  child.unref()
  process.stderr.write(`berth: mounted ${cfg.mountpoint} (pid ${child.pid}, log ${logPath})\n`)
}

const DAEMON_READY_MS = 60_000

/** The daemon's argv without secrets, and the env that carries them instead. */
function daemonArgs(cfg: MountConfig): { argv: string[]; env: NodeJS.ProcessEnv } {
  const argv: string[] = []
  for (let i = 0; i < cfg.argv.length; i++) {
    const a = cfg.argv[i]!
    const flag = a.split('=')[0]!
    if (['--user', '--pass', '--token', '--creds'].includes(flag)) {
      if (!a.includes('=')) i++
      continue
    }
    argv.push(a)
  }
  // the URL positional: the first non-flag argument when two are given
  const positional = argv.findIndex((a) => a === cfg.natsUrl || splitUrlCredentials(a).url === splitUrlCredentials(cfg.natsUrl).url)
  const url = splitUrlCredentials(cfg.natsUrl)
  if (positional >= 0) argv[positional] = url.url
  const env: NodeJS.ProcessEnv = {}
  const user = url.user ?? cfg.auth.user
  const pass = url.user !== undefined ? url.pass : cfg.auth.pass
  const token = url.token ?? (url.user !== undefined ? undefined : cfg.auth.token)
  if (user !== undefined) env.BERTH_NATS_USER = user
  if (pass !== undefined) env.BERTH_NATS_PASS = pass
  if (token !== undefined) env.BERTH_NATS_TOKEN = token
  if (cfg.auth.credsFile !== undefined) env.BERTH_NATS_CREDS = cfg.auth.credsFile
  return { argv, env }
}

/**
 * How long mounting waits for NATS and meta at start: a mount command must
 * end within seconds. Meta gets longer: a cluster started just before (a
 * `docker-compose up -d`, a boot) elects its meta leader first, which took 8 s
 * and more on a busy 2-core host (test/containers: 10 s was not always
 * enough). A line says so after START_HELLO_TELL_MS.
 */
const START_CONNECT_MS = 5000
const START_HELLO_MS = 30_000
const START_HELLO_TELL_MS = 5000

async function mountForeground(cfg: MountConfig): Promise<void> {
  const checked = checkMountpoint(cfg.mountpoint, { nonempty: cfg.nonempty, selfPid: process.pid })
  if (checked.cleanedStale) log.warn(`cleaned stale mount at ${cfg.mountpoint}`)

  const nc = await connectNats({ url: cfg.natsUrl, name: 'berth-mount', ...cfg.auth, connectTimeoutMs: Math.min(cfg.deadlineMs, START_CONNECT_MS) })
  const meta = new MetaClient(nc, { cluster: cfg.cluster, deadlineMs: cfg.deadlineMs })
  const session = randomBytes(12).toString('base64url')
  const helloMs = Math.min(cfg.deadlineMs, START_HELLO_MS)
  const tell = setTimeout(() => log.warn(`no berth meta answered for cluster "${cfg.cluster}" yet; waiting up to ${helloMs / 1000} s (a cluster that just started elects its meta leader first)`), START_HELLO_TELL_MS)
  const hello = await meta
    .call('hello', { session }, { deadlineMs: helloMs })
    .catch((err: unknown) => {
      const code = (err as { code?: unknown }).code
      if (code !== 'ETIMEDOUT') throw err
      throw new BerthError('ETIMEDOUT', `no berth meta answered for cluster "${cfg.cluster}" at ${maskSecrets(cfg.natsUrl)} within ${helloMs / 1000} s\n` +
        '  hint: is `berth meta` (or `berth up`) running? is --cluster right?', { cause: err })
    })
    .finally(() => clearTimeout(tell))
  // the session is registered below (SessionLease), once the VFS can list what it holds
  const blocks = new BlockClient(nc, {
    cluster: cfg.cluster,
    token: hello.token,
    replicas: hello.replicas,
    deadlineMs: cfg.deadlineMs,
    // a reader proved a replica bad: meta drops it and re-replicates from a good one
    onBadCopy: ({ hash, node, reason }) => {
      log.warn(`bad copy of ${hash.slice(0, 12)} on node ${node} (${reason}); reported to meta`)
      meta.call('badCopy', { hash, node, reason: reason.slice(0, 256) }).catch((err: unknown) => log.warn(`badCopy report for ${hash.slice(0, 12)} on ${node} failed`, err))
    },
  })
  blocks.seed(hello.nodes)
  await blocks.start()
  const pinned = new PinnedBlocks(blocks, meta, session)

  if (cfg.metaTtlMs === null && hello.forgetsOnServe !== true) {
    log.warn(`meta (berth ${hello.release ?? 'unknown release'}) does not announce its forget-everything message: metadata cache TTL ${META_CACHE_TTL_OLD_META_S} s instead of ${META_CACHE_TTL_S} s (upgrade meta, or set -o meta_cache_ttl)`)
  }
  const vfs = new Vfs(process.env.BERTH_TRACE === '1' ? tracedMeta(meta) : meta, pinned, {
    session,
    chunkSize: hello.chunkSize,
    cacheBytes: cfg.cacheBytes,
    maxDirtyBytes: cfg.writeBytes,
    maxUploads: cfg.maxUploads,
    compact: cfg.compact,
    readaheadChunks: cfg.readaheadChunks,
    metaTtlMs: metaTtlMs(cfg, hello.forgetsOnServe === true),
    unlinkWindow: cfg.unlinkWindow,
    closedFilesBytes: cfg.reopenCacheBytes,
    // trusting the attribute cache after a barrier relies on meta's
    // forget-everything message (an invalidation lost with a dying meta
    // would otherwise go unnoticed); without it, kept maps are checked
    // against a getattr
    ...(hello.forgetsOnServe === true ? { barrier: () => deliveredSoFar(nc) } : {}),
  })
  const metricsHttp = cfg.metricsListen ? await serveMetrics(createClientMetrics(vfs.blocks, vfs.copier, vfs.closed), cfg.metricsListen) : null
  const fuse = new FuseSession(vfs, {
    allowOther: cfg.allowOther,
    readOnly: cfg.readOnly,
    entryTimeoutS: cfg.entryTimeoutS,
    attrTimeoutS: cfg.attrTimeoutS,
    localLocks: cfg.localLocks,
    acl: cfg.acl,
    // passthrough needs CAP_SYS_ADMIN (FUSE_DEV_IOC_BACKING_OPEN): root only
    ...(cfg.localCopyBytes > 0 && process.getuid?.() === 0
      ? { localCopies: { dir: join(cfg.localCopyDir, createHash('sha256').update(resolve(cfg.mountpoint)).digest('hex').slice(0, 16)), maxBytes: cfg.localCopyBytes } }
      : {}),
  })
  vfs.kernel = fuse
  const inval = subscribeInvalidations(nc, cfg.cluster, meta.origin, vfs, fuse)
  const lease = new SessionLease(meta, {
    session,
    ttlMs: cfg.sessionTtlMs,
    host: hostname(),
    held: () => vfs.heldInodes(),
    lost: (inos) => vfs.markLost(inos),
    lapsed: () => vfs.locks.forgetAll(),
  })
  await lease.register()
  lease.start()

  // `umount DIR` (mount(8), systemd) or `fusermount3 -u` end the kernel side:
  // flush what is still buffered (to meta and the data nodes) and exit.
  try {
    fuse.mount(cfg.mountpoint, () => void shutdown('unmounted by umount(8)', true).finally(() => process.exit(0)))
  } catch (err) {
    lease.stop()
    inval.unsubscribe()
    throw new BerthError('EIO', `fuse could not mount ${cfg.mountpoint}: ${(err as Error).message}\n` +
      '  hint: is /dev/fuse there and fusermount3 installed (tools/install-deps)?', { cause: err })
  }
  // what "our mount" is at shutdown: after a lazy detach (`berth umount -l`)
  // another mount may sit at the same path, which this process must not touch
  const ownDevice = mountDevice(cfg.mountpoint)
  writePid(cfg.mountpoint)
  if (cfg.readaheadKb > 0) {
    setKernelReadahead(cfg.mountpoint, cfg.readaheadKb).then(
      (file) => log.debug(`kernel readahead ${cfg.readaheadKb} KiB (${file})`),
      (err: unknown) => log.info(`kernel readahead left at the kernel's default: ${(err as Error).message}`),
    )
  }

  let closing: Promise<void> | undefined
  /** `sessionEnded`: the kernel side is gone already (unmounted from outside): nothing to unmount. */
  const shutdown = (why: string, sessionEnded = false): Promise<void> => {
    closing ??= (async () => {
      log.info(`unmounting ${cfg.mountpoint} (${why})`)
      const errors = await vfs.flushAll()
      await vfs.settleUnlinks()
      await vfs.sendReleases()
      await pinned.sendUnpins()
      for (const e of errors) log.error('flush before unmount failed', e)
      if (!sessionEnded) unmount(fuse, cfg.mountpoint, ownDevice)
      lease.stop()
      metricsHttp?.server.close()
      inval.unsubscribe()
      await meta.call('sessionEnd', { session }, { deadlineMs: 5000 }).catch(() => undefined)
      await blocks.close().catch(() => undefined)
      await nc.drain().catch(() => undefined)
      removePid(cfg.mountpoint)
    })()
    return closing
  }
  // Invalidations published while we were disconnected are lost for good:
  // forget every cached entry and attribute (and the kernel's directory
  // attributes and listings) when the connection comes back.
  onReconnect(nc, () => vfs.clearCache())
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.on(sig, () => {
      void shutdown(sig).finally(() => process.exit(0))
    })
  }

  // ready only once the root answers through the kernel
  const st = await stat(cfg.mountpoint).catch((err: unknown) => {
    // never leave a half-made mount behind a failed start
    lazyUnmount(cfg.mountpoint)
    removePid(cfg.mountpoint)
    throw err
  })
  if (st.ino !== 1) log.warn(`root of ${cfg.mountpoint} reports inode ${st.ino}`)
  emitEvent('ready', { role: 'client', mountpoint: cfg.mountpoint, pid: process.pid, session, ...(metricsHttp ? { metrics: metricsHttp.url } : {}) })
  await nc.closed()
}

/**
 * BERTH_TRACE=1: each metadata call of the VFS on stderr as `meta.<op> ms`,
 * beside the FUSE operations, so a trace shows the round trips per operation.
 */
function tracedMeta(meta: MetaClient): MetaApi {
  return {
    call(op, body, opts) {
      const started = process.hrtime.bigint()
      const done = () => process.stderr.write(`meta.${op} ${(Number(process.hrtime.bigint() - started) / 1e6).toFixed(2)}\n`)
      const p = meta.call(op, body, opts)
      p.then(done, done)
      return p
    },
  }
}

/**
 * Unmounts; if the kernel refuses (busy), detaches lazily like `umount -l`.
 * fuse_session_unmount reports nothing, so the mount table says whether it
 * worked. Only while the mount at `mountpoint` is this process's own
 * (`ownDevice`): detached lazily before, its path may hold another mount now.
 */
function unmount(fuse: FuseSession, mountpoint: string, ownDevice: string | null): void {
  const ours = () => ownDevice !== null && mountDevice(mountpoint) === ownDevice
  if (!ours()) {
    log.info(`${mountpoint} no longer holds this mount (detached earlier); nothing to unmount there`)
    return
  }
  fuse.unmount()
  if (ours()) {
    log.warn(`unmount of ${mountpoint} failed, detaching lazily`)
    lazyUnmount(mountpoint)
  }
}

/**
 * Meta's invalidations drop this client's cache and the kernel's (pushed
 * through the binding); one with `all` drops all of it (Vfs.clearCache).
 * Those of this mount's own requests (`by` is our origin) are not pushed:
 * the kernel made those changes itself (it drops a parent's attributes after
 * a create or unlink, and a removed name's dentry), and a push arriving after
 * it re-read them would only cost another GETATTR.
 */
function subscribeInvalidations(nc: NatsConnection, cluster: string, origin: string, vfs: Vfs, fuse: FuseSession): Subscription {
  return nc.subscribe(subjects(cluster).inval, {
    callback: (err, msg) => {
      if (err) return
      let body: unknown
      try {
        body = decode(msg.data)
      } catch {
        return
      }
      const inv = body as Partial<Invalidation>
      // a meta process started serving (or its connection came back): what was
      // committed without an invalidation is unknown, so forget everything
      if (inv?.all === true) {
        log.info('meta asked every mount to forget its cache (it started serving or reconnected): metadata cache dropped')
        vfs.clearCache()
        return
      }
      const nums = (v: unknown): number[] => (Array.isArray(v) ? v.filter((x): x is number => Number.isInteger(x) && x > 0) : [])
      // locks released or downgraded: blocked lock requests here ask again
      const locks = nums(inv?.locks)
      if (locks.length) vfs.locks.wake(locks)
      if (locks.length && !inv?.inos?.length && !inv?.dirs?.length) return
      const entries = Array.isArray(inv?.entries)
        ? inv.entries.filter((e): e is [number, string] => Array.isArray(e) && Number.isInteger(e[0]) && e[0] > 0 && typeof e[1] === 'string')
        : []
      const change = { inos: nums(inv?.inos), dirs: nums(inv?.dirs), entries }
      const own = inv?.by === origin
      vfs.invalidate(change, own)
      if (own) return
      // the kernel's caches too, from the binding's notifier thread
      for (const [parent, name] of entries) fuse.invalidateEntry(parent, name)
      for (const ino of change.inos) fuse.invalidateInode(ino)
      fuse.remoteChange(change.inos)
      for (const dir of change.dirs) fuse.invalidateInode(dir)
    },
  })
}
