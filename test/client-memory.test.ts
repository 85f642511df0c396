// The client's memory stays under a cap derived from its configuration
// (--cache-mb, --write-mb) while a big file is copied in and read back, and
// while a big directory is listed. CI copies 768 MiB (six times the caches
// and buffers together) and lists 20,000 entries; BERTH_MEMORY_MB=2048
// BERTH_MEMORY_ENTRIES=50000 run the sizes the memory work was accepted at
// (2 GiB, 50,000 entries), about 2 minutes longer on a 2-core machine.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ROOT_INO } from '../common/protocol'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'
import { MiB, rssBytes, sampleRss, shAsync } from './helpers/proc'

const COPY_MB = Number(process.env.BERTH_MEMORY_MB ?? 768)
const ENTRIES = Number(process.env.BERTH_MEMORY_ENTRIES ?? 20_000)

t.test(`memory: the client stays under its cap copying ${COPY_MB} MiB and listing ${ENTRIES} entries`, async (t) => {
  const CACHE_MB = 64
  const WRITE_MB = 64
  // block cache + write-back buffers as configured, plus the Node runtime,
  // code, NATS/HTTP buffers and garbage between collections
  const RUNTIME_MB = 256
  const CAP = (CACHE_MB + WRITE_MB + RUNTIME_MB) * MiB
  const c = await startCluster(t, { nodes: 2, replicas: 1 })
  const m = await mountCluster(t, c, { args: ['--cache-mb', String(CACHE_MB), '--write-mb', String(WRITE_MB)] })
  const pid = m.client.pid
  t.teardown(() => {
    if (!t.passing()) t.comment(`client stderr:\n${m.client.stderr().slice(-4000)}\nmeta stderr:\n${c.meta.stderr().slice(-2000)}`)
  })
  t.comment(`cap ${CAP / MiB} MiB = cache ${CACHE_MB} + write ${WRITE_MB} + runtime ${RUNTIME_MB}; idle RSS ${Math.round((rssBytes(pid) ?? 0) / MiB)} MiB`)

  await t.test(`${COPY_MB} MiB copy in and read back`, async (t) => {
    const local = mkdtempSync(join(tmpdir(), 'berth-big-'))
    t.teardown(() => rmSync(local, { recursive: true, force: true }))
    const src = join(local, 'big')
    await shAsync(`head -c ${COPY_MB * MiB} /dev/urandom > ${src}`)
    const want = (await shAsync(`sha256sum < ${src}`)).split(' ')[0]

    let s = sampleRss(pid)
    let start = Date.now()
    await shAsync(`cp ${src} ${m.dir}/big`, { timeoutMs: 120_000 })
    let r = s.stop()
    t.comment(`copy in: ${Date.now() - start} ms, max RSS ${Math.round(r.max / MiB)} MiB over ${r.samples} samples`)
    t.ok(r.samples > 5, 'sampled during the copy')
    t.ok(r.max < CAP, `max RSS during the copy ${Math.round(r.max / MiB)} MiB < cap ${CAP / MiB} MiB`)
    rmSync(src)

    s = sampleRss(pid)
    start = Date.now()
    const got = (await shAsync(`sha256sum < ${m.dir}/big`, { timeoutMs: 120_000 })).split(' ')[0]
    r = s.stop()
    t.comment(`read back: ${Date.now() - start} ms, max RSS ${Math.round(r.max / MiB)} MiB`)
    t.equal(got, want, 'sha256 of the copy')
    t.ok(r.max < CAP, `max RSS during the read ${Math.round(r.max / MiB)} MiB < cap ${CAP / MiB} MiB`)
    await shAsync(`rm ${m.dir}/big`)
  })

  await t.test(`ls -f of ${ENTRIES} entries`, async (t) => {
    const N = ENTRIES
    // creating is not what is checked here: the entries go straight to meta
    // (as another client would make them), the mount only lists them
    await shAsync(`mkdir ${m.dir}/many`)
    const mc = await c.metaClient({ deadlineMs: 60_000 })
    const { attr: dir } = await mc.call('lookup', { parent: ROOT_INO, name: 'many' })
    const start = Date.now()
    let next = 0
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < N) {
          const i = next++
          await mc.call('mknod', { parent: dir.ino, name: `entry-${String(i).padStart(6, '0')}`, mode: 0o100644, rdev: 0, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 })
        }
      }),
    )
    t.comment(`created ${N} entries through meta in ${Date.now() - start} ms`)

    const s = sampleRss(pid)
    const lsStart = Date.now()
    const count = (await shAsync(`ls -f ${m.dir}/many | wc -l`, { timeoutMs: 120_000 })).trim()
    const lsMs = Date.now() - lsStart
    const r = s.stop()
    t.comment(`ls -f: ${lsMs} ms, max RSS ${Math.round(r.max / MiB)} MiB`)
    t.equal(count, String(N + 2), 'ls -f | wc -l counts every entry plus . and ..')
    t.ok(r.max < CAP, `max RSS while listing ${Math.round(r.max / MiB)} MiB < cap ${CAP / MiB} MiB`)
  })
})
