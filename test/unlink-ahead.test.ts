// Unlinks, rmdirs, mkdirs and directories' setattrs answered before meta
// applies them (client/ahead-pipeline.ts, docs/semantics.md#unlink, #mkdir
// and #setattr), on real
// mounts of a real cluster. Meta is
// stopped with SIGSTOP to hold the exact interleavings: an unlink returns
// while meta cannot answer, a later request of the same mount waits for it,
// and one that meta never answers comes back at the directory's fsync.
import { existsSync, readdirSync } from 'node:fs'
import { chmod, chown, mkdir, open, readFile, readdir, rm, rmdir, stat, unlink, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { startCluster, type TestCluster } from './helpers/cluster'
import { eventually, sleep, stderrWhen } from './helpers/lifecycle'
import { mountCluster } from './helpers/mount'

/** Holds meta (SIGSTOP) until the returned function is called; always resumed at teardown. */
function pauseMeta(t: Test, c: TestCluster): () => void {
  let paused = true
  const resume = () => {
    if (!paused) return
    paused = false
    process.kill(c.meta.pid, 'SIGCONT')
  }
  process.kill(c.meta.pid, 'SIGSTOP')
  t.teardown(resume)
  return resume
}

/** `p` settled within `ms`: 'done', 'failed', or 'pending'. */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<'done' | 'failed' | 'pending'> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<'pending'>((r) => (timer = setTimeout(() => r('pending'), ms)))
  const out = await Promise.race([p.then(() => 'done' as const, () => 'failed' as const), late])
  clearTimeout(timer)
  return out
}

t.test('unlinks ahead of meta', async (t) => {
  const c = await startCluster(t, { nodes: 2 })
  const a = await mountCluster(t, c)
  const b = await mountCluster(t, c)

  await t.test('an unlink returns while meta is stopped; a later lookup of the same mount waits for it', async (t) => {
    const d = join(a.dir, 'held')
    await mkdir(d)
    await writeFile(join(d, 'x'), 'x\n')
    await writeFile(join(d, 'y'), 'y\n')
    t.same(readdirSync(join(b.dir, 'held')).sort(), ['x', 'y'], 'B lists both names')
    // A knows both names (it made them) and lists the directory from its cache
    const resume = pauseMeta(t, c)
    const gone = unlink(join(d, 'x'))
    t.equal(await settledWithin(gone, 5000), 'done', 'unlink returned with meta stopped')
    // asked asynchronously: a call that waited for meta would otherwise hold this process
    const looked = stat(join(d, 'x')).then(() => 'exists', (err: NodeJS.ErrnoException) => err.code)
    t.equal(await settledWithin(looked, 5000), 'done', 'A answers a lookup of the name with meta stopped')
    t.equal(await looked, 'ENOENT', 'A: the name is gone at once')
    const listed = readdir(d)
    t.equal(await settledWithin(listed, 5000), 'done', 'A lists the directory with meta stopped')
    t.same(await listed, ['y'], 'A lists the directory without it')
    // B asks meta (its listing is not complete after the invalidation
    // cannot come): blocks until meta runs again, then sees the unlink
    resume()
    await gone
    t.ok(await eventually(() => !existsSync(join(b.dir, 'held', 'x')), 5000, 20), 'B sees the name gone once meta runs')
    t.ok(existsSync(join(b.dir, 'held', 'y')), 'B still has the other name')
  })

  await t.test('a request after an unlink is answered after meta applied the unlink', async (t) => {
    const d = join(a.dir, 'order')
    await mkdir(join(b.dir, 'order'))
    await writeFile(join(b.dir, 'order', 'f'), 'f\n')
    // A learns the name by lookup only: its listing of the directory is not
    // complete, so the stat below has to ask meta
    await stat(join(d, 'f'))
    const resume = pauseMeta(t, c)
    t.equal(await settledWithin(unlink(join(d, 'f')), 5000), 'done', 'unlink returned with meta stopped')
    const looked = stat(join(d, 'f')).then(
      () => 'exists',
      (err: NodeJS.ErrnoException) => err.code,
    )
    t.equal(await settledWithin(looked, 500), 'pending', 'the lookup waits (meta is stopped)')
    resume()
    // meta reads on a connection of its own: without the mount's barrier the
    // lookup would be answered from before the unlink's commit
    t.equal(await looked, 'ENOENT', 'the lookup sees the unlink')
  })

  await t.test('a file\'s fsync waits for the unlinks in flight; -o sync_unlink sends none ahead', async (t) => {
    const m = await mountCluster(t, c)
    const d = join(m.dir, 'waits')
    await mkdir(d)
    await writeFile(join(d, 'x'), 'x\n')
    await writeFile(join(d, 'clean'), 'clean\n')
    const fd = await open(join(d, 'clean'), 'r+')
    t.teardown(() => fd.close().catch(() => undefined))
    let resume = pauseMeta(t, c)
    t.equal(await settledWithin(unlink(join(d, 'x')), 5000), 'done', 'unlink returned with meta stopped')
    // the file is clean: its fsync has nothing of its own to commit
    const synced = fd.sync()
    t.equal(await settledWithin(synced, 500), 'pending', 'fsync of another file waits for the unlink')
    resume()
    await synced
    t.notOk(existsSync(join(b.dir, 'waits', 'x')), 'and once it returned, another mount sees the unlink')
    await fd.close()

    const s = await mountCluster(t, c, { args: ['-o', 'sync_unlink'] })
    await writeFile(join(s.dir, 'waits', 'z'), 'z\n')
    resume = pauseMeta(t, c)
    const waited = unlink(join(s.dir, 'waits', 'z'))
    t.equal(await settledWithin(waited, 500), 'pending', 'with -o sync_unlink, an unlink waits for meta')
    resume()
    await waited
    t.notOk(existsSync(join(b.dir, 'waits', 'z')), 'and is applied when it returns')
  })

  await t.test('unlink and create of one name in a loop keeps their order', async (t) => {
    const d = join(a.dir, 'churn')
    await mkdir(d)
    const f = join(d, 'f')
    for (let i = 0; i < 200; i++) {
      await writeFile(f, `v${i}\n`, { flag: 'wx' })
      await unlink(f)
    }
    await writeFile(f, 'last\n', { flag: 'wx' })
    t.equal(await readFile(join(b.dir, 'churn', 'f'), 'utf8'), 'last\n', 'B reads the last version')
    t.same(await readdir(join(b.dir, 'churn')), ['f'], 'B lists one name')
  })

  await t.test('rm -rf of a tree: every rmdir after its files, nothing left on either mount', async (t) => {
    const root = join(a.dir, 'tree')
    for (let i = 0; i < 6; i++) {
      const sub = join(root, `d${i}`, 'inner')
      await mkdir(sub, { recursive: true })
      for (let j = 0; j < 60; j++) await writeFile(join(sub, `f${j}`), `${i}.${j}\n`)
      for (let j = 0; j < 20; j++) await writeFile(join(root, `d${i}`, `g${j}`), `${i}.${j}\n`)
    }
    await rm(root, { recursive: true })
    t.notOk(existsSync(root), 'A: gone')
    t.notOk(existsSync(join(b.dir, 'tree')), 'B: gone')
  })

  await t.test('rmdir of a directory this mount emptied goes ahead too, after the unlinks in it', async (t) => {
    const d = join(a.dir, 'emptied')
    await mkdir(join(d, 'sub'), { recursive: true })
    for (let i = 0; i < 5; i++) await writeFile(join(d, 'sub', `f${i}`), 'x')
    const resume = pauseMeta(t, c)
    const removed = (async () => {
      for (let i = 0; i < 5; i++) await unlink(join(d, 'sub', `f${i}`))
      await rmdir(join(d, 'sub'))
    })()
    t.equal(await settledWithin(removed, 5000), 'done', 'unlinks and rmdir returned with meta stopped')
    const listed = readdir(d)
    t.equal(await settledWithin(listed, 5000), 'done', 'A lists the parent with meta stopped')
    t.same(await listed, [], 'A: the directory is gone')
    resume()
    t.ok(await eventually(() => !existsSync(join(b.dir, 'emptied', 'sub')), 5000, 20), 'B sees it gone once meta runs')
  })

  await t.test('an rmdir ahead that meta refuses (another mount created a file in it first) is reported at the parent\'s fsync', async (t) => {
    // The case needs B's create to reach meta before A's rmdir. B sends it at
    // once only when it answers its lookup of "late" itself, from a listing
    // of sub it kept whole; an invalidation that reaches B during that
    // listing makes B ask meta first, so its create goes after A's rmdir and
    // meets ENOENT (seen in CI twice, also after waiting for A's mkdirs
    // below). That is the other legal order: it is checked, and the case is
    // tried again in a new directory, up to five times.
    for (let attempt = 1; attempt <= 5; attempt++) {
      const name = `raced${attempt}`
      const d = join(a.dir, name)
      await mkdir(join(d, 'sub'), { recursive: true })
      // A's mkdirs went ahead: once they are applied, their invalidations are
      // on B's connection before any answer to B's requests below
      const made = await open(d, 'r')
      await made.sync()
      await made.close()
      // B lists sub whole: its lookup before the create is answered locally
      t.same(await readdir(join(b.dir, name, 'sub')), [], 'B lists sub empty')
      const resume = pauseMeta(t, c)
      const created = writeFile(join(b.dir, name, 'sub', 'late'), 'late\n').then(
        () => 'ok',
        (err: NodeJS.ErrnoException) => err.code,
      )
      t.equal(await settledWithin(created, 300), 'pending', 'B\'s create waits for meta')
      t.equal(await settledWithin(rmdir(join(d, 'sub')), 5000), 'done', 'A\'s rmdir returned with meta stopped')
      const parentFd = await open(d, 'r')
      t.teardown(() => parentFd.close().catch(() => undefined))
      resume()
      const fsynced = () => parentFd.sync().then(() => 'ok', (err: NodeJS.ErrnoException) => err.code)
      if ((await created) === 'ENOENT') {
        t.equal(await fsynced(), 'ok', `attempt ${attempt}: B's create reached meta after A's rmdir (ENOENT): the rmdir stood, the parent's fsync is clean`)
        t.notOk(existsSync(join(d, 'sub')), 'and sub is gone')
        continue
      }
      t.equal(await created, 'ok', 'B\'s create succeeded')
      t.equal(await fsynced(), 'EIO', 'fsync of the parent reports the refused rmdir')
      const said = /rmdir of "sub" in directory \d+ was answered before meta applied it, and meta then failed it \(ENOTEMPTY/
      t.match(await stderrWhen(a.client, said), said, 'the mount logged it')
      t.same(await readdir(join(d, 'sub')), ['late'], 'A sees the directory again, with B\'s file')
      return
    }
    t.fail('in five attempts, B\'s create never reached meta before A\'s rmdir')
  })

  await t.test('a directory\'s utimens, chown and chmod (tar\'s, at its end) return while meta is stopped; B sees them once meta runs', async (t) => {
    const d = join(a.dir, 'attrs')
    await mkdir(d, { mode: 0o700 })
    await stat(d)
    const resume = pauseMeta(t, c)
    const changed = (async () => {
      await utimes(d, 1_000_000_000, 1_000_000_000)
      await chown(d, 1234, 5678)
      await chmod(d, 0o750)
    })()
    t.equal(await settledWithin(changed, 5000), 'done', 'all three returned with meta stopped')
    const mine = await stat(d)
    t.same([mine.mode & 0o7777, mine.uid, mine.gid, mine.mtimeMs], [0o750, 1234, 5678, 1e12], 'A sees them at once')
    resume()
    const synced = await open(d, 'r')
    t.equal(await synced.sync().then(() => 'ok', (err: NodeJS.ErrnoException) => err.code), 'ok', 'fsync of the directory: applied, nothing failed')
    await synced.close()
    const seen = async () => {
      const s = await stat(join(b.dir, 'attrs'))
      return (s.mode & 0o7777) === 0o750 && s.uid === 1234 && s.gid === 5678 && s.mtimeMs === 1e12
    }
    t.ok(await eventually(seen, 5000, 20), 'B sees all three')
    t.equal((await stat(d)).ctimeMs, (await stat(join(b.dir, 'attrs'))).ctimeMs, 'and the same ctime as A, meta\'s')
  })

  await t.test('mkdir -p returns while meta is stopped; B sees the same tree, same inode numbers, once meta runs', async (t) => {
    const top = join(a.dir, 'made')
    await mkdir(top)
    await mkdir(join(top, 'primer')) // the first mkdir waits for meta and has inode numbers reserved meanwhile
    await sleep(200)
    const resume = pauseMeta(t, c)
    const made = mkdir(join(top, 'x', 'y', 'z'), { recursive: true })
    t.equal(await settledWithin(made, 5000), 'done', 'mkdir -p returned with meta stopped')
    const seen = stat(join(top, 'x', 'y', 'z'))
    t.equal(await settledWithin(seen, 5000), 'done', 'and A stats the new directory with meta stopped')
    const mine = await seen
    t.ok(mine.isDirectory() && mine.nlink === 2, 'a new empty directory')
    t.equal((await stat(join(top, 'x'))).nlink, 3, 'its parent has one link more')
    resume()
    await writeFile(join(top, 'x', 'y', 'z', 'f'), 'f\n') // waits for the mkdirs (barrier)
    const theirs = await stat(join(b.dir, 'made', 'x', 'y', 'z'))
    t.equal(theirs.ino, mine.ino, 'B sees the directory with the inode number A gave the kernel')
    t.same(await readdir(join(b.dir, 'made', 'x', 'y', 'z')), ['f'], 'and what A made in it')
    const synced = await open(top, 'r')
    t.equal(await synced.sync().then(() => 'ok', (err: NodeJS.ErrnoException) => err.code), 'ok', 'nothing failed')
    await synced.close()
  })

  await t.test('a mkdir ahead that meta refuses (another mount made the name first) is reported at the parent\'s fsync', async (t) => {
    // B's create must reach meta before A's mkdir. B answers its lookup of the
    // name from its complete listing of the directory, unless an invalidation
    // of A's primer reached it after it listed the directory (late, under
    // load): then its lookup waits for meta, its create comes after A's mkdir,
    // and B finds a directory (EISDIR, CI at f67f181). That turn is not the
    // one under test: it is tried again in a new directory.
    for (let attempt = 1; ; attempt++) {
      const name = `clash${attempt}`
      const d = join(a.dir, name)
      await mkdir(d)
      await mkdir(join(d, 'primer'))
      t.same(await readdir(join(b.dir, name)), ['primer'], 'B lists it whole')
      await sleep(200)
      const resume = pauseMeta(t, c)
      const theirs = writeFile(join(b.dir, name, 'same'), 'B\n').then(
        () => 'created' as const,
        (err: NodeJS.ErrnoException) => err.code ?? String(err),
      )
      t.equal(await settledWithin(theirs, 300), 'pending', "B's create waits for meta")
      t.equal(await settledWithin(mkdir(join(d, 'same')), 5000), 'done', "A's mkdir returned with meta stopped")
      const parentFd = await open(d, 'r')
      t.teardown(() => parentFd.close().catch(() => undefined))
      resume()
      const got = await theirs
      const synced = await parentFd.sync().then(() => 'ok', (err: NodeJS.ErrnoException) => err.code)
      if ((got === 'EISDIR' || got === 'EEXIST') && attempt < 5) {
        t.equal(synced, 'ok', `B's lookup waited for meta, so A's mkdir came first (attempt ${attempt}): the parent's fsync is clean, B met A's directory`)
        continue
      }
      t.equal(got, 'created', "B's create reached meta first")
      t.equal(synced, 'EIO', 'fsync of the parent reports the refused mkdir')
      const said = /mkdir of "same" in directory \d+ was answered before meta applied it, and meta then failed it \(EEXIST/
      t.match(await stderrWhen(a.client, said), said, 'the mount logged it')
      t.ok(await eventually(async () => (await stat(join(d, 'same'))).isFile(), 3000, 50), "A sees B's file under the name")
      return
    }
  })

  await t.test('a file created while meta is stopped: open returns, its close waits for meta (close-to-open), then B reads it', async (t) => {
    const d = join(a.dir, 'created')
    await mkdir(d)
    await writeFile(join(d, 'primer'), 'p\n') // waits for meta, and has inode numbers reserved meanwhile
    await sleep(200)
    const resume = pauseMeta(t, c)
    const opened = open(join(d, 'f'), 'wx')
    t.equal(await settledWithin(opened, 5000), 'done', 'the create returned with meta stopped')
    const fd = await opened
    await fd.write('hello\n')
    const closed = fd.close()
    t.equal(await settledWithin(closed, 500), 'pending', 'its close waits for meta')
    resume()
    await closed
    t.equal(await readFile(join(b.dir, 'created', 'f'), 'utf8'), 'hello\n', 'B reads what A closed')
    t.equal((await stat(join(b.dir, 'created', 'f'))).ino, (await stat(join(d, 'f'))).ino, 'the same inode number on both mounts')
  })

  /**
   * A directory A made, with one file: its close waited for meta, and A has
   * inode numbers reserved by the time it returns; B has listed it whole.
   */
  async function primedDir(t: Test, name: string): Promise<string> {
    const d = join(a.dir, name)
    await mkdir(d)
    await writeFile(join(d, 'primer'), 'p\n')
    t.same(await readdir(join(b.dir, name)), ['primer'], 'B lists it whole')
    await sleep(200)
    return d
  }

  await t.test('a create left open goes to meta by itself (HOLD_MS): B sees the name while A still has the file open', async (t) => {
    const d = await primedDir(t, 'held-create')
    const fd = await open(join(d, 'open'), 'wx')
    try {
      await fd.write('partial\n')
      const seen = await eventually(async () => (await readdir(join(b.dir, 'held-create'))).includes('open'), 5000, 20)
      t.ok(seen, 'B lists the new name before A closes it')
      t.equal((await stat(join(b.dir, 'held-create', 'open'))).size, 0, 'empty there until the close (close-to-open)')
    } finally {
      await fd.close()
    }
    t.equal(await readFile(join(b.dir, 'held-create', 'open'), 'utf8'), 'partial\n', 'B reads it after the close')
  })

  await t.test('a create ahead that meta refuses (another mount made the name first): its close fails, never silently', async (t) => {
    const d = await primedDir(t, 'twice')
    const resume = pauseMeta(t, c)
    const theirs = writeFile(join(b.dir, 'twice', 'same'), 'B\n')
    t.equal(await settledWithin(theirs, 300), 'pending', "B's create waits for meta")
    const opened = open(join(d, 'same'), 'wx')
    t.equal(await settledWithin(opened, 5000), 'done', "A's create returned with meta stopped")
    const fd = await opened
    await fd.write('A\n')
    resume()
    await theirs
    const closed = await fd.close().then(() => 'ok', (err: NodeJS.ErrnoException) => err.code)
    t.not(closed, 'ok', `A's close fails (${closed})`)
    const said = /mknod of "same" in directory \d+ was answered before meta applied it, and meta then failed it \(EEXIST/
    t.match(await stderrWhen(a.client, said), said, 'the mount logged it')
    t.ok(await eventually(async () => (await readFile(join(d, 'same'), 'utf8')) === 'B\n', 3000, 50), "A reads B's file under the name")
  })

  await t.test('an unlink meta never answers: the directory\'s fsync reports EIO once, and the mount asks meta again', async (t) => {
    const m = await mountCluster(t, c, { args: ['--deadline-ms', '1500'] })
    const d = join(m.dir, 'lost')
    await mkdir(d)
    await writeFile(join(d, 'x'), 'x\n')
    const resume = pauseMeta(t, c)
    t.equal(await settledWithin(unlink(join(d, 'x')), 5000), 'done', 'unlink returned with meta stopped')
    const dirFd = await open(d, 'r')
    t.teardown(() => dirFd.close().catch(() => undefined))
    // fsync waits for the unlink, which fails at the 1.5 s deadline
    const synced = dirFd.sync().then(
      () => 'ok',
      (err: NodeJS.ErrnoException) => err.code,
    )
    t.equal(await settledWithin(synced, 15_000), 'done', 'fsync of the directory returned')
    t.equal(await synced, 'EIO', 'fsync of the directory reports the failed unlink')
    const said = /answered before meta applied it, and meta then failed it/
    t.match(await stderrWhen(m.client, said), said, 'the mount logged it')
    resume()
    t.equal(await dirFd.sync().then(() => 'ok', (err: NodeJS.ErrnoException) => err.code), 'ok', 'reported once')
    // whether meta applied the stale request when it woke or not, both
    // mounts now say the same (the failing mount dropped what it cached)
    await sleep(300)
    t.equal(existsSync(join(d, 'x')), existsSync(join(b.dir, 'lost', 'x')), 'both mounts agree on the name')
  })
})
