// Two mounts of one cluster (docs/architecture.md#consistency-model):
// close-to-open for file contents, and namespace changes made through one
// mount show up in the other within 2 s (meta's invalidations, the kernel's
// 1 s entry timeout).
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { open, readFile, rename, unlink, writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Polls `cond` until it holds; returns the ms it took, or null after `withinMs`. */
async function within(withinMs: number, cond: () => boolean): Promise<number | null> {
  const start = Date.now()
  for (;;) {
    if (cond()) return Date.now() - start
    if (Date.now() - start > withinMs) return null
    await sleep(50)
  }
}

/** Opens `path`, reads it whole, and returns the bytes with the size fstat reports on that handle. */
async function readWithSize(path: string): Promise<{ data: Buffer; size: number }> {
  const fh = await open(path, 'r')
  try {
    const size = (await fh.stat()).size
    return { data: await fh.readFile(), size }
  } finally {
    await fh.close()
  }
}

t.test('two mounts of one cluster', async (t) => {
  const c = await startCluster(t, { nodes: 2 })
  const a = await mountCluster(t, c)
  const b = await mountCluster(t, c)

  await t.test('a file written and closed on A reads back on B (bytes and size)', async (t) => {
    // spans two chunks and ends mid-chunk
    const data = randomBytes(5 * 1024 * 1024 + 12345)
    await writeFile(join(a.dir, 'new.bin'), data)
    const got = await readWithSize(join(b.dir, 'new.bin'))
    t.equal(got.size, data.length, 'fstat size on B')
    t.ok(got.data.equals(data), 'bytes on B')
  })

  await t.test('overwrite on A after B read the file: B\'s next open sees the new contents', async (t) => {
    const v1 = randomBytes(3 * 1024 * 1024)
    await writeFile(join(a.dir, 'over.bin'), v1)
    t.ok((await readFile(join(b.dir, 'over.bin'))).equals(v1), 'B reads v1')

    // same size, different bytes: only the chunk map tells them apart
    const v2 = randomBytes(v1.length)
    await writeFile(join(a.dir, 'over.bin'), v2)
    let got = await readWithSize(join(b.dir, 'over.bin'))
    t.equal(got.size, v2.length, 'same size')
    t.ok(got.data.equals(v2), 'B reads v2 on its next open')

    // shorter, while B keeps a handle open from before the overwrite
    const held = await open(join(b.dir, 'over.bin'), 'r')
    t.teardown(() => held.close().catch(() => undefined))
    const head = Buffer.alloc(4096)
    await held.read(head, 0, head.length, 0)
    t.ok(head.equals(v2.subarray(0, 4096)), 'held handle reads v2')
    const v3 = randomBytes(777_777)
    await writeFile(join(a.dir, 'over.bin'), v3)
    got = await readWithSize(join(b.dir, 'over.bin'))
    t.equal(got.size, v3.length, 'B sees the shorter size on a new open while an old handle is open')
    t.ok(got.data.equals(v3), 'B reads v3 on a new open while an old handle is open')
    await held.close()
  })

  await t.test('rename on A is visible on B within 2 s', async (t) => {
    await writeFile(join(a.dir, 'before.txt'), 'moved\n')
    // B looks both names up first, so stale positive and negative entries are in play
    t.ok(existsSync(join(b.dir, 'before.txt')), 'B sees the old name')
    t.notOk(existsSync(join(b.dir, 'after.txt')), 'B does not see the new name yet')
    await rename(join(a.dir, 'before.txt'), join(a.dir, 'after.txt'))
    const took = await within(2000, () => !existsSync(join(b.dir, 'before.txt')) && existsSync(join(b.dir, 'after.txt')))
    t.not(took, null, `rename visible on B${took === null ? '' : ` after ${took} ms`}`)
    t.equal(await readFile(join(b.dir, 'after.txt'), 'utf8'), 'moved\n', 'contents follow the name')
    const names = readdirSync(b.dir)
    t.ok(names.includes('after.txt') && !names.includes('before.txt'), 'B\'s listing shows the new name only')
  })

  await t.test('unlink on A is visible on B within 2 s', async (t) => {
    await writeFile(join(a.dir, 'doomed.txt'), 'bye\n')
    t.equal(await readFile(join(b.dir, 'doomed.txt'), 'utf8'), 'bye\n', 'B reads it first')
    await unlink(join(a.dir, 'doomed.txt'))
    const took = await within(2000, () => !existsSync(join(b.dir, 'doomed.txt')) && !readdirSync(b.dir).includes('doomed.txt'))
    t.not(took, null, `unlink visible on B${took === null ? '' : ` after ${took} ms`}`)
  })

  await t.test('mkdir on A is visible on B', async (t) => {
    // B lists the parent first, so its cached listing must be dropped
    t.notOk(readdirSync(b.dir).includes('newdir'), 'not there yet')
    await mkdir(join(a.dir, 'newdir'))
    await writeFile(join(a.dir, 'newdir', 'inner.txt'), 'inside\n')
    const took = await within(2000, () => readdirSync(b.dir).includes('newdir') && existsSync(join(b.dir, 'newdir')))
    t.not(took, null, `mkdir visible on B${took === null ? '' : ` after ${took} ms`}`)
    t.ok(statSync(join(b.dir, 'newdir')).isDirectory(), 'a directory on B')
    t.same(readdirSync(join(b.dir, 'newdir')), ['inner.txt'], 'its contents on B')
    t.equal(await readFile(join(b.dir, 'newdir', 'inner.txt'), 'utf8'), 'inside\n')
  })

  await t.test('a directory B made or listed whole answers misses locally, until A changes it', async (t) => {
    // B makes "mine" (complete: new and empty) and lists "listed" whole
    await mkdir(join(b.dir, 'mine'))
    await mkdir(join(a.dir, 'listed'))
    await writeFile(join(a.dir, 'listed', 'one.txt'), '1\n')
    await within(2000, () => existsSync(join(b.dir, 'listed')))
    t.same(readdirSync(join(b.dir, 'listed')), ['one.txt'], 'B lists it')
    for (const dir of ['mine', 'listed']) {
      t.notOk(existsSync(join(b.dir, dir, 'late.txt')), `${dir}/late.txt missing on B (a local miss)`)
      await writeFile(join(a.dir, dir, 'late.txt'), `${dir}\n`)
      const took = await within(2000, () => existsSync(join(b.dir, dir, 'late.txt')))
      t.not(took, null, `created on A, seen on B${took === null ? '' : ` after ${took} ms`}`)
      t.equal(await readFile(join(b.dir, dir, 'late.txt'), 'utf8'), `${dir}\n`, 'and read there')
      t.ok(readdirSync(join(b.dir, dir)).includes('late.txt'), 'and listed there')
    }
    // B's own changes keep its directory complete and exact
    await writeFile(join(b.dir, 'mine', 'own.txt'), 'own\n')
    await rename(join(b.dir, 'mine', 'own.txt'), join(b.dir, 'mine', 'moved.txt'))
    t.same(readdirSync(join(b.dir, 'mine')).sort(), ['late.txt', 'moved.txt'], 'B lists its own create and rename')
    t.equal(await readFile(join(b.dir, 'mine', 'moved.txt'), 'utf8'), 'own\n', 'the moved name resolves on B')
    t.same(readdirSync(join(a.dir, 'mine')).sort(), ['late.txt', 'moved.txt'], 'and on A')
  })
})
