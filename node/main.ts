/**
 * `berth node`: a data node. Reads top-down: config, block store, HTTP server,
 * NATS, heartbeats, placement, commands, ready; SIGTERM drains and exits.
 */
import { statfs } from 'node:fs/promises'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { acceptedBlockHashes } from '../common/block-hash'
import { NodeHttp } from '../common/block-client'
import { announcedProtocol, releaseName } from '../common/compat'
import { emitEvent, logger } from '../common/log'
import { connectNats } from '../common/nats-connect'
import { wasmBaselineOnly } from '../common/node-flags'
import { HEARTBEAT_MS, type Heartbeat, type NodeState } from '../common/protocol'
import { request, subjects } from '../common/wire'
import { FileBlockStore } from './block-store'
import { serveCommands } from './commands'
import { HELP, loadConfig } from './config'
import { createHttpApi } from './http-api'
import { createMetrics } from './metrics'
import { loadNodeId } from './node-id'
import { Peers } from './peers'
import { Placement } from './placement'
import { Scrubber } from './scrub'
import { StoreRootWatch } from './store-root-watch'
import { DiskCanary } from './disk-canary'
import { filesystemId } from './fs-identity'

async function fsAvailable(dir: string): Promise<number> {
  const s = await statfs(dir)
  return s.bavail * s.bsize
}

export async function run(argv: string[]): Promise<void> {
  const cfg = loadConfig(argv)
  if (!cfg) {
    process.stdout.write(HELP)
    return
  }
  wasmBaselineOnly()
  const log = logger('node')
  const subj = subjects(cfg.cluster)

  const store = await FileBlockStore.open(cfg.dir)
  const id = await loadNodeId(cfg.dir, cfg.id)
  let fsFree = await fsAvailable(cfg.dir)
  const capacity = cfg.capacity ?? fsFree + store.usage().bytes
  // Keep room for two maximal blocks in flight before saying "full".
  const reserve = cfg.maxBlock * 2
  const free = () => Math.max(0, Math.min(capacity - store.usage().bytes, fsFree))
  let draining = false
  // operator drain (meta's nodeAdmin): not persisted here; meta re-sends it
  // whenever this node's heartbeat says otherwise
  let adminDrain = false
  const state = (): NodeState => (draining || adminDrain ? 'draining' : free() < reserve ? 'full' : 'up')

  // the disk hangs while this process goes on: leave the cluster until it answers (node/disk-canary.ts)
  let diskStalled = false
  const metrics = createMetrics(() => store.usage(), () => diskStalled)
  const http = new NodeHttp(cfg.secret)
  // Peers are learned from heartbeats once NATS is up; until then the chain
  // check knows nobody and refuses every chain (no PUT arrives before placement anyway).
  let peers: Peers | null = null
  const server = createHttpApi({
    id,
    secret: cfg.secret,
    maxBlock: cfg.maxBlock,
    store,
    metrics,
    http,
    state,
    free,
    peerUrl: (peerId) => peers?.urlOf(peerId),
    peerDead: (peerId) => peers?.isDead(peerId) ?? false,
    diskStalled: () => diskStalled,
    maxPuts: cfg.maxPuts,
    putIdleMs: cfg.putIdleMs,
    log,
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(cfg.port, cfg.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const addr = server.address() as AddressInfo
  const advertisedHost = cfg.host === '0.0.0.0' || cfg.host === '::' ? '127.0.0.1' : cfg.host
  const url = cfg.advertise ?? `http://${advertisedHost.includes(':') ? `[${advertisedHost}]` : advertisedHost}:${addr.port}`

  const nc = await connectNats({ url: cfg.natsUrl, name: `berth-node-${id}`, ...cfg.nats })
  const startedAt = Date.now()
  const blockHashes = acceptedBlockHashes()
  peers = new Peers(nc, subj.heartbeat, log)
  const fsId = filesystemId(cfg.dir)
  const protocol = announcedProtocol()
  const release = releaseName()
  const self = (): Heartbeat => ({ id, url, capacity, used: store.usage().bytes, blocks: store.usage().blocks, state: state(), startedAt, fsId, fsFree, protocol, release, blockHashes, ...(cfg.zone ? { zone: cfg.zone } : {}) })
  peers.start(self)

  const placement = new Placement({ nc, subject: subj.place, ownSubject: subj.placeAt(id), self: { id, url, ...(cfg.zone ? { zone: cfg.zone } : {}) }, free, live: () => peers.live(), log })
  // new writes only while up and the disk answers
  const takesWrites = () => state() === 'up' && !diskStalled
  placement.set(takesWrites())
  // Out of placement and silent (every peer counts this node dead after
  // NODE_DEAD_MS, and their requests to it end), PUTs refused; back when the
  // canary finishes. Meta repairs its blocks meanwhile, as for a dead node.
  const canary = new DiskCanary(join(cfg.dir, 'tmp'), cfg.diskStallMs, (stalled, why) => {
    diskStalled = stalled
    if (stalled) {
      metrics.diskStalls.inc()
      log.error(`disk stalled: ${why}; leaving the cluster (no heartbeats, no placement, PUTs refused) until it answers`)
    } else log.warn(`disk answers again: ${why}; rejoining the cluster`)
    placement.set(takesWrites())
    peers.silence(stalled)
  })
  canary.start()
  // This node cannot go on (meta does not serve its protocol, common/compat.ts;
  // its block folder is gone): say why and stop, exit status 1
  let stopNow: (() => void) | undefined
  let refused = false
  const failStop = (reason: string): void => {
    if (refused) return
    refused = true
    log.error(reason)
    process.exitCode = 1
    // after the reply is on its way
    setTimeout(() => stopNow?.(), 50)
  }
  let lastState = state()
  const rootWatch = await StoreRootWatch.open(store.blocksDir)
  const refresh = setInterval(() => {
    rootWatch.check().then(
      (why) => why && failStop(`${why}: stopping, so that meta declares this node dead and re-protects its blocks elsewhere`),
      (err: unknown) => log.warn('block folder check failed', err),
    )
    fsAvailable(cfg.dir).then(
      (n) => {
        fsFree = n
        const s = state()
        placement.set(takesWrites())
        if (s !== lastState) {
          log.info(`state ${lastState} -> ${s}`)
          lastState = s
          peers.publishNow()
        }
      },
      (err: unknown) => log.warn('statfs failed', err),
    )
  }, Math.min(1000, HEARTBEAT_MS))

  // A corrupt copy found by scrub is reported at once: meta drops its row and
  // repairs from a good copy (reconciliation would find it later anyway).
  const reportCorrupt = async (hash: string, reason: string): Promise<void> => {
    await request(nc, subj.meta('badCopy'), { hash, node: id, reason: `scrub: ${reason}` }, { timeoutMs: 5000, deadlineMs: 15_000 }).catch((err: unknown) =>
      log.warn(`could not report corrupt block ${hash} to meta (reconciliation will find it): ${(err as Error).message}`),
    )
  }
  const scrubber = new Scrubber(store, cfg.scrubIntervalMs, metrics, log, reportCorrupt)
  const drain = (on: boolean): boolean => {
    adminDrain = on
    // at once: no placement may reach this node after the command is answered
    const s = state()
    placement.set(takesWrites())
    if (s !== lastState) {
      log.info(`state ${lastState} -> ${s} (operator)`)
      lastState = s
      peers?.publishNow()
    }
    return s === 'draining'
  }
  const commands = serveCommands({ nc, subject: subj.nodeCmd(id), store, http, log, verify: (h) => scrubber.check(h), drain, refuse: failStop })
  scrubber.start()
  const purge = setInterval(
    () => {
      store.purgeTrash(cfg.trashMs).then(
        (n) => n && log.info(`purged ${n} trashed block(s)`),
        (err: unknown) => log.warn('trash purge failed', err),
      )
    },
    Math.max(200, Math.min(60_000, Math.floor(cfg.trashMs / 4))),
  )
  purge.unref()

  emitEvent('ready', { role: 'node', id, url })
  log.info(`node ${id} serving ${cfg.dir} at ${url} (capacity ${capacity} bytes, ${store.usage().blocks} blocks stored; block files written ${store.usage().directIo ? 'with O_DIRECT' : 'through the page cache'})`)

  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGTERM', stop)
      process.off('SIGINT', stop)
      resolve()
    }
    process.on('SIGTERM', stop)
    process.on('SIGINT', stop)
    stopNow = stop
    if (refused) stop()
    nc.closed().then(() => {
      if (!draining) log.error('NATS connection closed for good; stopping')
      stop()
    }, stop)
  })

  draining = true
  clearInterval(refresh)
  canary.stop()
  clearInterval(purge)
  scrubber.stop()
  placement.stop()
  peers.publishNow()
  commands.unsubscribe()
  peers.stop()
  if (!nc.isClosed()) await nc.drain().catch((err: unknown) => log.warn('NATS drain failed', err))
  await new Promise<void>((resolve) => {
    server.close(() => resolve())
    server.closeIdleConnections()
  })
  await http.close()
  log.info(`node ${id} stopped${refused ? ' (could not go on: see the error above)' : ''}`)
  // A stray handle (a client that never hangs up) must not keep a stopped node alive.
  setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref()
}
