/**
 * A mount sets the kernel's readahead window for itself (client/kernel-readahead.ts):
 * the kernel starts a FUSE mount at 128 KiB whatever FUSE_INIT asks, so a
 * sequential read came as 128 KiB READs. As root the mount raises it to
 * `-o readahead_kb` (1024); 0 leaves it.
 */
import { readFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import t from 'tap'
import { mountDevice } from '../client/kernel-readahead'
import { startCluster } from './helpers/cluster'
import { delta, fuseOps } from './helpers/fuse-ops'
import { eventually } from './helpers/lifecycle'
import { mountCluster } from './helpers/mount'

const readahead = (dir: string): number => {
  const dev = mountDevice(readFileSync('/proc/self/mountinfo', 'utf8'), dir)
  return dev ? Number(readFileSync(`/sys/class/bdi/${dev}/read_ahead_kb`, 'utf8')) : -1
}

t.test('1024 KiB by default, the kernel\'s own with readahead_kb=0, and 1 MiB READs for a sequential read', { skip: process.getuid?.() !== 0 ? 'sysfs is root\'s' : false }, async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const m = await mountCluster(t, c, { args: ['-o', 'metrics=127.0.0.1:0'] })
  const off = await mountCluster(t, c, { args: ['-o', 'readahead_kb=0,metrics=127.0.0.1:0'] })
  t.ok(await eventually(() => readahead(m.dir) === 1024, 5000, 50), `default: ${readahead(m.dir)} KiB`)
  t.equal(readahead(off.dir), 128, 'readahead_kb=0: the kernel\'s 128 KiB')
  // what the window is for: a cold sequential read comes in 1 MiB READs, not 128 KiB ones
  const w = spawnSync('dd', ['if=/dev/urandom', `of=${m.dir}/f`, 'bs=1M', 'count=16', 'conv=fsync', 'status=none'])
  t.equal(w.status, 0, 'a 16 MiB file')
  const reads = async (mount: typeof m): Promise<number> => {
    spawnSync('sh', ['-c', 'sync; echo 1 > /proc/sys/vm/drop_caches'])
    const url = String(mount.client.ready.metrics)
    const before = await fuseOps(url)
    const r = spawnSync('dd', [`if=${mount.dir}/f`, 'of=/dev/null', 'bs=1M', 'status=none'])
    t.equal(r.status, 0, 'read back')
    return delta(await fuseOps(url), before, 'read')
  }
  const big = await reads(m)
  const small = await reads(off)
  t.ok(big <= 20, `16 MiB read in ${big} READs with the window raised`)
  t.ok(small >= 100, `and in ${small} with the kernel's 128 KiB`)
})
