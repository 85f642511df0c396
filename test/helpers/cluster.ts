/**
 * Real processes for tests: nats-server, meta and data nodes in a t.testdir() (test/helpers/test-dir.ts),
 * each torn down by the test that started it (registered right after start).
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import type { NatsConnection } from 'nats'
import type { Test } from 'tap'
import { MetaClient } from '../../common/meta-client'
import { connectNats } from '../../common/nats-connect'
import { launchNatsCluster, launchNatsServer, type NatsClusterHandle, type NatsServerHandle, type NatsUsers } from '../../cli/nats-server'
import { spawnService, type ServiceHandle } from '../../cli/spawn-service'
import { testDir } from './test-dir'

export interface TestCluster {
  dir: string
  cluster: string
  secret: string
  /** With `natsServers > 1`: url lists every server, stop() stops them all. */
  nats: Pick<NatsServerHandle, 'url' | 'users' | 'stop' | 'port'>
  /** The NATS cluster, when one was asked for (`natsServers > 1`). */
  natsCluster: NatsClusterHandle | null
  meta: ServiceHandle
  nodes: ServiceHandle[]
  /** Environment that gives a child process the credentials of `role`. */
  env(role: keyof NatsUsers): NodeJS.ProcessEnv
  startMeta(opts?: { db?: string; args?: string[]; env?: NodeJS.ProcessEnv }): Promise<ServiceHandle>
  startNode(opts?: { dir?: string; args?: string[]; env?: NodeJS.ProcessEnv }): Promise<ServiceHandle>
  /** A NATS connection as `role`, closed at teardown. */
  connect(role?: keyof NatsUsers): Promise<NatsConnection>
  metaClient(opts?: { deadlineMs?: number }): Promise<MetaClient>
}

export async function startNats(t: Test, dir = testDir(t)): Promise<NatsServerHandle> {
  const nats = await launchNatsServer({ dir: join(dir, 'nats') })
  t.teardown(() => nats.stop())
  return nats
}

/**
 * The cluster lives in `t.testdir()`: the same test must not call
 * `t.testdir()` again (tap empties the folder, and the nodes' blocks with it).
 */
/** `metaEnv`: extra environment of every meta (test hooks such as BERTH_TEST_DROP_INVALIDATIONS). */
export async function startCluster(t: Test, opts: { nodes?: number; replicas?: number; metaArgs?: string[]; metaEnv?: NodeJS.ProcessEnv; nodeArgs?: string[]; natsServers?: number } = {}): Promise<TestCluster> {
  const dir = testDir(t)
  let natsCluster: NatsClusterHandle | null = null
  let nats: Pick<NatsServerHandle, 'url' | 'users' | 'stop' | 'port'>
  if ((opts.natsServers ?? 1) > 1) {
    natsCluster = await launchNatsCluster({ dir: join(dir, 'nats'), n: opts.natsServers })
    t.teardown(() => natsCluster?.stop())
    nats = natsCluster
  } else nats = await startNats(t, dir)
  const secret = randomBytes(24).toString('base64url')
  const cluster = 'berth'
  let nodeSeq = 0
  const env = (role: keyof NatsUsers): NodeJS.ProcessEnv => ({
    BERTH_NATS_USER: nats.users[role].user,
    BERTH_NATS_PASS: nats.users[role].pass,
    BERTH_SECRET: secret,
    BERTH_LOG: process.env.BERTH_LOG ?? 'warn',
    // no warm-up (meta/warmup.ts): seconds of CPU at each start for speed the
    // tests do not measure; test/meta-warmup.test.ts runs it
    BERTH_META_WARMUP_OPS: process.env.BERTH_META_WARMUP_OPS ?? '0',
  })
  const c: TestCluster = {
    dir,
    cluster,
    secret,
    nats,
    natsCluster,
    meta: undefined as unknown as ServiceHandle,
    nodes: [],
    env,
    async startMeta(o = {}) {
      const args = ['meta', '--nats', nats.url, '--db', o.db ?? join(dir, 'meta.db'), '--replicas', String(opts.replicas ?? 2), ...(opts.metaArgs ?? []), ...(o.args ?? [])]
      // --ha waits up to 120 s for JetStream placement (meta/main.ts)
      const meta = await spawnService(args, { env: { ...env('meta'), ...opts.metaEnv, ...o.env }, readyTimeoutMs: natsCluster ? 150_000 : 60_000 })
      t.teardown(() => meta.stop())
      return meta
    },
    async startNode(o = {}) {
      const n = nodeSeq++
      const args = ['node', '--nats', nats.url, '--dir', o.dir ?? join(dir, `node${n}`), '--listen', '127.0.0.1:0', ...(opts.nodeArgs ?? []), ...(o.args ?? [])]
      const node = await spawnService(args, { env: { ...env('node'), ...o.env }, readyTimeoutMs: 30_000 })
      t.teardown(() => node.stop())
      return node
    },
    async connect(role = 'client') {
      const nc = await connectNats({ url: nats.url, name: `test-${role}`, ...nats.users[role] })
      t.teardown(() => nc.close())
      return nc
    },
    async metaClient(o = {}) {
      return new MetaClient(await c.connect('client'), { cluster, deadlineMs: o.deadlineMs ?? 10_000 })
    },
  }
  c.meta = await c.startMeta()
  // nodes start side by side (each is ~0.6 s of module loading and NATS set-up);
  // c.nodes[i] is still the node in `node${i}`: startNode numbers them before its first await
  c.nodes.push(...(await Promise.all(Array.from({ length: opts.nodes ?? 3 }, () => c.startNode()))))
  return c
}
