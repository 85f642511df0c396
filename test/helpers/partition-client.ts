/**
 * A meta client run inside a network-namespace "host" of a partition test
 * (test/meta-partition.test.ts): the test process itself is outside the lab's
 * network, so what must reach NATS runs here and reports on stdout, one JSON
 * line per event.
 *
 *   node partition-client.js write NATS_URL DIR_NAME MS   mknod f0, f1, ... in /DIR_NAME for MS;
 *        {"op":n,"ok":true,"at":ms} | {"op":n,"ok":false,"code":..,"at":ms}; at the end {"done":true}
 *   node partition-client.js check NATS_URL DIR_NAME      {"leader":metaId,"names":[...],"replicas":[...]}
 *   node partition-client.js log NATS_URL [SEQ]            {"entries":[{"seq","by","lead","names"}...]} (meta credentials; SQL of the entries near SEQ)
 *
 * Credentials come from BERTH_NATS_USER/BERTH_NATS_PASS.
 */
import { MetaClient } from '../../common/meta-client'
import { connectNats } from '../../common/nats-connect'
import { ROOT_INO } from '../../common/protocol'
import { MetaLog } from '../../meta/log/stream'
import { listDir } from './list-dir'

const who = { uid: 0, gid: 0 }
const emit = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`)

async function main(): Promise<void> {
  const [mode, url, arg, ms] = process.argv.slice(2)
  const nc = await connectNats({ url: url!, name: `partition-${mode}`, user: process.env.BERTH_NATS_USER, pass: process.env.BERTH_NATS_PASS })
  const meta = new MetaClient(nc, { cluster: 'berth', deadlineMs: 30_000 })
  try {
    if (mode === 'write') {
      const dir = (await meta.call('mkdir', { parent: ROOT_INO, name: arg!, mode: 0o755, ...who })).attr.ino
      emit({ dir, leader: (await meta.call('status', {})).metaId })
      const until = Date.now() + Number(ms)
      for (let n = 0; Date.now() < until; n++) {
        try {
          await meta.call('mknod', { parent: dir, name: `f${n}`, mode: 0o100644, ...who })
          emit({ op: n, ok: true, at: Date.now() })
        } catch (err) {
          emit({ op: n, ok: false, code: (err as { code?: string }).code ?? String(err), at: Date.now() })
        }
      }
      emit({ done: true })
    } else if (mode === 'check') {
      const st = await meta.call('status', {})
      const dir = (await meta.call('lookup', { parent: ROOT_INO, name: arg! })).attr.ino
      const names = (await listDir(meta, dir)).map((e) => e.name)
      emit({ leader: st.metaId, names, replicas: st.replication?.replicas ?? [] })
    } else if (mode === 'log') {
      const log = await MetaLog.open(nc, 'berth', 3)
      const { first, last } = await log.bounds()
      const entries: Array<{ seq: number; by: string; lead: boolean; names: string[]; sql?: string[] }> = []
      const around = Number(arg ?? 0)
      for (let seq = Math.max(first, 1); seq <= last; seq++) {
        const e = await log.read(seq)
        // the names each entry writes (string parameters that look like the writer's names), for diagnosis
        const names = e.ops.flat().flatMap((w) => (w[0] === 'run' ? w[2].filter((p): p is string => typeof p === 'string' && /^f\d+$/.test(p)) : []))
        const sql = around && Math.abs(seq - around) <= 3 ? e.ops.flat().map((w) => `${w[1].slice(0, 60)} ${w[0] === 'run' ? JSON.stringify(w[2].map((p) => (typeof p === 'string' || typeof p === 'number' ? p : typeof p))) : ''}`) : undefined
        entries.push({ seq, by: e.by, lead: e.lead === true, names: [...new Set(names)], sql })
      }
      emit({ entries })
    } else throw new Error(`unknown mode ${mode}`)
  } finally {
    await nc.close()
  }
}

// exit once stdout has taken every line: a pipe's writes are asynchronous, and
// process.exit() drops what is still queued (a 219 KB `entries` line came cut)
main().then(
  () => process.stdout.write('', () => process.exit(0)),
  (err: unknown) => {
    process.stderr.write(`partition-client: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  },
)
