/**
 * Round trips the kernel makes to the mount for a small file's life, counted
 * on a real mount (its FUSE op counters): a read-only handle's close sends one
 * FLUSH (it names the closing process, whose POSIX locks a close drops;
 * client/locks.ts) and nothing else, and reopening a file this mount wrote
 * and closed keeps its pages and attributes (FOPEN_KEEP_CACHE, no GETATTR
 * for fstat).
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import t from 'tap'
import { startCluster } from './helpers/cluster'
import { delta, fuseOps } from './helpers/fuse-ops'
import { mountCluster } from './helpers/mount'
import { PYTHON3 } from './helpers/python'

t.test('a small file written, closed, then read back', async (t) => {
  const c = await startCluster(t, { nodes: 2 })
  const m = await mountCluster(t, c, { args: ['-o', 'metrics=127.0.0.1:0'] })
  const url = String(m.client.ready.metrics)
  const f = join(m.dir, 'small')

  let before = await fuseOps(url)
  writeFileSync(f, 'written here\n')
  let after = await fuseOps(url)
  t.ok(delta(after, before, 'flush') >= 1, 'a writer\'s close sends FLUSH (its commit)')
  t.equal(delta(after, before, 'getxattr'), 0, 'the kernel\'s security.capability question before a write is answered by the binding, not JS')
  const probe = spawnSync(PYTHON3, ['-c', 'import os, sys\ntry:\n  os.getxattr(sys.argv[1], "security.capability")\nexcept OSError as e:\n  print(e.errno)', f], { encoding: 'utf8' })
  t.equal(probe.stdout.trim(), '61', 'security.capability reads as ENODATA, as before')

  statSync(f) // the kernel's attributes fresh, whatever the test's pace
  before = await fuseOps(url)
  const fd = openSync(f, 'r')
  const size = fstatSync(fd).size
  const buf = Buffer.alloc(64)
  const n = readSync(fd, buf, 0, buf.length, 0)
  closeSync(fd)
  after = await fuseOps(url)
  t.equal(buf.subarray(0, n).toString(), 'written here\n', 'read back')
  t.equal(size, 13, 'fstat has the size')
  t.equal(delta(after, before, 'open'), 1, 'one OPEN')
  t.equal(delta(after, before, 'flush'), 1, 'the read-only close sends one FLUSH (lock owners), no more')
  t.equal(delta(after, before, 'getattr'), 0, 'fstat is answered by the kernel: the open kept what it had')

  // another writer's content still reaches this mount's readers
  writeFileSync(f, 'rewritten\n')
  t.equal(readFileSync(f, 'utf8'), 'rewritten\n', 'a rewrite is read back')
})

t.test('-o local_locks: no lock owner to tell, so a read-only close sends no FLUSH (FOPEN_NOFLUSH)', async (t) => {
  const c = await startCluster(t, { nodes: 1 })
  const m = await mountCluster(t, c, { args: ['-o', 'metrics=127.0.0.1:0,local_locks'] })
  const url = String(m.client.ready.metrics)
  const f = join(m.dir, 'small')
  writeFileSync(f, 'written here\n')
  let before = await fuseOps(url)
  t.equal(readFileSync(f, 'utf8'), 'written here\n', 'read back')
  let after = await fuseOps(url)
  t.equal(delta(after, before, 'open'), 1, 'one OPEN')
  t.equal(delta(after, before, 'flush'), 0, 'the read-only close sends no FLUSH')
  before = after
  writeFileSync(f, 'rewritten\n')
  after = await fuseOps(url)
  t.ok(delta(after, before, 'flush') >= 1, 'a writer\'s close still does (its commit)')
})
