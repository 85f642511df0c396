// The client under faults (docs/architecture.md#failure-handling): unlink
// while open, kill -9 of the client, a stopped nats-server. The memory bound
// is checked in client-memory.test.ts.
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readSync, readdirSync, statSync, unlinkSync, writeSync } from 'node:fs'
import { open, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { launchNatsServer } from '../cli/nats-server'
import { startCluster, type TestCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'
import { bounded, MiB } from './helpers/proc'
import { blockName } from '../common/block-hash'

const CHUNK = 4 * MiB
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/** Block names (BLAKE3 of the valid bytes of each 4 MiB chunk: every node lists it) of `data`. */
function blockNames(data: Buffer): string[] {
  const out: string[] = []
  for (let off = 0; off < data.length; off += CHUNK) out.push(blockName(data.subarray(off, Math.min(data.length, off + CHUNK)), 'blake3'))
  return out
}

/** How many data-node directories of `c` hold block `hash` on disk. */
function copiesOnDisk(c: TestCluster, hash: string): number {
  let n = 0
  for (let i = 0; i < c.nodes.length; i++) {
    if (existsSync(join(c.dir, `node${i}`, 'blocks', hash.slice(0, 2), hash.slice(2, 4), hash))) n++
  }
  return n
}

t.test('unlink while open: the handle keeps working, the last close frees the blocks', async (t) => {
  // a short grace so the blocks of a freed inode leave the nodes within the test
  const GRACE_MS = 500
  const c = await startCluster(t, { nodes: 2, replicas: 2, metaArgs: ['--gc-grace-ms', String(GRACE_MS)] })
  const m = await mountCluster(t, c)
  t.teardown(() => {
    if (t.passing()) return
    t.comment(`client stderr:\n${m.client.stderr().slice(-4000)}\nmeta stderr:\n${c.meta.stderr().slice(-4000)}`)
  })
  const path = join(m.dir, 'ghost.bin')

  const first = randomBytes(6 * MiB)
  const fd = openSync(path, 'w+')
  let closed = false
  t.teardown(() => {
    try {
      if (!closed) closeSync(fd)
    } catch {
      // the mount may already be detached
    }
  })
  writeSync(fd, first, 0, first.length, 0)
  fsyncSync(fd)
  const firstBlocks = blockNames(first)
  t.same(firstBlocks.map((h) => copiesOnDisk(c, h)), [2, 2], 'both blocks on both nodes after fsync')

  unlinkSync(path)
  t.notOk(existsSync(path), 'the name is gone')
  t.notOk(readdirSync(m.dir).includes('ghost.bin'), 'and not listed')
  t.same(readdirSync(m.dir), [], 'no .fuse_hidden file either')

  const back = Buffer.alloc(first.length)
  t.equal(readSync(fd, back, 0, back.length, 0), first.length, 'read through the handle after unlink')
  t.ok(back.equals(first), 'same bytes')

  // grow it through the handle: rewrites chunk 1, adds chunk 2
  const more = randomBytes(5 * MiB)
  t.equal(writeSync(fd, more, 0, more.length, first.length), more.length, 'write through the handle after unlink')
  fsyncSync(fd)
  const whole = Buffer.concat([first, more])
  const again = Buffer.alloc(whole.length + 1)
  t.equal(readSync(fd, again, 0, again.length, 0), whole.length, 'reads up to the new end of file')
  t.ok(again.subarray(0, whole.length).equals(whole), 'reads back what was written after unlink')
  // fstat sends GETATTR for the inode itself (docs/semantics.md, unlinked-while-open
  // files): it must not need the name that is gone
  let size: number | string
  try {
    size = fstatSync(fd).size
  } catch (err) {
    size = (err as NodeJS.ErrnoException).code ?? String(err)
  }
  t.equal(size, whole.length, 'fstat sees the new size')

  const allBlocks = [...new Set([...firstBlocks, ...blockNames(whole)])]
  t.equal(allBlocks.length, 4, 'four distinct blocks were written (chunk 1 twice)')
  // longer than the grace period: an open handle must keep the current blocks
  await sleep(GRACE_MS * 3 + 1000)
  t.same(blockNames(whole).map((h) => copiesOnDisk(c, h)), [2, 2, 2], 'blocks of the open, unlinked file stay on the nodes')

  closeSync(fd)
  closed = true
  const start = Date.now()
  let left = allBlocks.filter((h) => copiesOnDisk(c, h) > 0)
  while (left.length && Date.now() - start < 20_000) {
    await sleep(200)
    left = left.filter((h) => copiesOnDisk(c, h) > 0)
  }
  t.same(left, [], `every block left the nodes after the last close${left.length ? '' : ` (${Date.now() - start} ms)`}`)
})

t.test('kill -9 of the client after fsync: berth mount cleans the stale mount, the file is intact', async (t) => {
  const c = await startCluster(t, { nodes: 2 })
  const m = await mountCluster(t, c)
  const data = randomBytes(9 * MiB + 4321)
  const fd = openSync(join(m.dir, 'kept.bin'), 'w')
  writeSync(fd, data, 0, data.length, 0)
  fsyncSync(fd)

  await m.client.kill()
  let code: string | undefined
  try {
    statSync(m.dir)
  } catch (err) {
    code = (err as NodeJS.ErrnoException).code
  }
  t.equal(code, 'ENOTCONN', 'the dead client left a stale mount behind')
  try {
    closeSync(fd)
  } catch {
    // the connection behind it is gone
  }

  const again = await bounded(m.remount(), 40_000)
  t.ok(again.ok, `berth mount on the same mountpoint succeeds (${again.code ?? `${again.ms} ms`})`)
  if (!again.ok) return
  t.ok(statSync(m.dir).isDirectory(), 'the mountpoint answers again')
  const back = await readFile(join(m.dir, 'kept.bin'))
  t.equal(back.length, data.length, 'size of the fsynced file')
  t.equal(sha256(back), sha256(data), 'sha256 of the fsynced file')
})

t.test('nats-server stopped: calls fail within the deadline, and the mount recovers when it is back', async (t) => {
  const DEADLINE_MS = 3000
  // one meta call and one upload are each bounded by the deadline; the rest is
  // FUSE and scheduling on a busy 2-core machine
  const SLACK_MS = 4000
  const c = await startCluster(t, { nodes: 2 })
  const m = await mountCluster(t, c, { args: ['--deadline-ms', String(DEADLINE_MS)] })
  const fh = await open(join(m.dir, 'held.bin'), 'w')
  t.teardown(() => fh.close().catch(() => undefined))
  await fh.write(randomBytes(64 * 1024), 0, 64 * 1024, 0)
  await fh.sync()

  await c.nats.stop()

  const st = await bounded(stat(join(m.dir, 'never-looked-up')))
  t.ok(!st.ok && ['EIO', 'ETIMEDOUT'].includes(st.code ?? ''), `stat of an uncached path fails with EIO/ETIMEDOUT (got ${st.code ?? 'success'} after ${st.ms} ms)`)
  t.ok(st.ms < DEADLINE_MS + SLACK_MS, `within the deadline plus slack (${st.ms} ms)`)

  const w = await bounded(fh.write(randomBytes(MiB), 0, MiB, 64 * 1024))
  t.ok(w.ok, `a buffered write is accepted (${w.code ?? `${w.ms} ms`})`)
  const sync = await bounded(fh.sync())
  t.ok(!sync.ok && ['EIO', 'ETIMEDOUT'].includes(sync.code ?? ''), `fsync fails with EIO/ETIMEDOUT (got ${sync.code ?? 'success'} after ${sync.ms} ms)`)
  t.ok(sync.ms < DEADLINE_MS + SLACK_MS, `within the deadline plus slack (${sync.ms} ms)`)
  const close = await bounded(fh.close())
  t.ok(!close.ok && ['EIO', 'ETIMEDOUT'].includes(close.code ?? ''), `close fails with EIO/ETIMEDOUT (got ${close.code ?? 'success'} after ${close.ms} ms)`)
  t.ok(close.ms < DEADLINE_MS + SLACK_MS, `within the deadline plus slack (${close.ms} ms)`)
  const create = await bounded(writeFile(join(m.dir, 'new-while-down.txt'), 'x'))
  t.ok(!create.ok && ['EIO', 'ETIMEDOUT'].includes(create.code ?? ''), `creating a file fails with EIO/ETIMEDOUT (got ${create.code ?? 'success'} after ${create.ms} ms)`)

  // the same port and users: every process reconnects to the address it knows
  const nats2 = await launchNatsServer({ dir: join(c.dir, 'nats'), port: c.nats.port, users: c.nats.users })
  t.teardown(() => nats2.stop())
  const back = Date.now()
  const body = randomBytes(5 * MiB)
  let ok = false
  let last = ''
  let attempts = 0
  while (!ok && Date.now() - back < 30_000) {
    attempts++
    const p = join(m.dir, `after-${attempts}.bin`)
    const r = await bounded((async () => {
      await writeFile(p, body)
      return (await readFile(p)).equals(body)
    })())
    ok = r.ok && r.value === true
    if (!ok) {
      last = r.code ?? 'different bytes'
      t.comment(`attempt ${attempts} after ${Date.now() - back} ms: ${last} in ${r.ms} ms`)
      await sleep(250)
    }
  }
  const recovered = Date.now() - back
  t.ok(ok, `the same mount creates and reads a file again (${ok ? `${recovered} ms after nats-server was back, ${attempts} attempt(s)` : `last: ${last}`})`)
  t.comment(`recovery after nats-server restart: ${recovered} ms`)
  // teardown runs last-registered first and would stop nats-server before the
  // services that say goodbye over it (each would then wait out its deadline)
  for (const h of [m.client, c.meta, ...c.nodes]) await h.stop()
})
