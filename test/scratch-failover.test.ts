import t from 'tap'
import { ROOT_INO } from '../common/protocol'
import { startCluster } from './helpers/cluster'

const HA = ['--ha', '--log-replicas', '3', '--lease-ttl-ms', '3000']
t.test('failover timeline after kill -9 of NATS server 0', { timeout: 300_000 }, async (t) => {
  const c = await startCluster(t, { nodes: 0, natsServers: 3, metaArgs: HA })
  const m2 = await c.startMeta({ db: c.dir + '/meta2.db' })
  const mc = await c.metaClient({ deadlineMs: 60_000 })
  await mc.call('mkdir', { parent: ROOT_INO, name: 'warm', mode: 0o755, uid: 0, gid: 0 })
  const t0 = performance.now()
  const lines: string[] = []
  let stop = false
  const loop = (async () => {
    for (let i = 0; !stop; i++) {
      const s = performance.now()
      try {
        await mc.call('mkdir', { parent: ROOT_INO, name: `d${i}`, mode: 0o755, uid: 0, gid: 0 })
        const ms = performance.now() - s
        if (ms > 100) lines.push(`${Math.round(s - t0)} ms: mkdir d${i} took ${Math.round(ms)} ms`)
      } catch (err) {
        lines.push(`${Math.round(s - t0)} ms: mkdir d${i} failed after ${Math.round(performance.now() - s)}: ${(err as Error).message}`)
      }
      await new Promise((r) => setTimeout(r, 20))
    }
  })()
  await new Promise((r) => setTimeout(r, 2000))
  const nc = await c.connect('meta')
  const jsm = await nc.jetstreamManager()
  const info = await jsm.streams.info('BERTH_META_' + c.cluster)
  const leader = info.cluster?.leader ?? ''
  const victim = Number(leader.replace('berth-nats-', ''))
  lines.push(`${Math.round(performance.now() - t0)} ms: kill server ${victim} (stream leader ${leader})`)
  await nc.close()
  await c.natsCluster!.kill(victim)
  await new Promise((r) => setTimeout(r, 20000))
  stop = true
  await loop
  t.comment(lines.join('\n'))
  t.comment('meta1:\n' + c.meta.stderr().slice(-3000))
  t.comment('meta2:\n' + m2.stderr().slice(-3000))
  await c.natsCluster!.restart(victim)
})
