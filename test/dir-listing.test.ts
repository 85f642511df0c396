/**
 * Directory listings without opendir (client/dir-streams.ts): the kernel sends
 * no opendir or releasedir, keeps listings in its own cache (FOPEN_CACHE_DIR)
 * until a change, local or pushed from meta, and two listings of one
 * directory in progress at once each see every name exactly once.
 */
import { mkdirSync, opendirSync, readdirSync, unlinkSync, writeFileSync, type Dir } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { DirStreams } from '../client/dir-streams'
import { startCluster } from './helpers/cluster'
import { delta, fuseOps } from './helpers/fuse-ops'
import { mountCluster } from './helpers/mount'

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (cond()) return true
    await new Promise((r) => setTimeout(r, 20))
  }
  return cond()
}

/** Reads both directory handles a few entries at a time, alternating. */
function interleaved(a: Dir, b: Dir): [string[], string[]] {
  const seen: [string[], string[]] = [[], []]
  const open = [a, b]
  while (open.some(Boolean)) {
    open.forEach((d, i) => {
      for (let k = 0; d && k < 7; k++) {
        const e = d.readSync()
        if (!e) {
          d.closeSync()
          open[i] = null as unknown as Dir
          break
        }
        seen[i]!.push(e.name)
      }
    })
  }
  return seen
}

t.test('listings on a real mount', async (t) => {
  const c = await startCluster(t, { nodes: 1 })
  const a = await mountCluster(t, c, { args: ['-o', 'metrics=127.0.0.1:0'] })
  const b = await mountCluster(t, c)
  const url = String(a.client.ready.metrics)
  const dir = join(a.dir, 'big')
  readdirSync(a.dir)
  // long names: a listing takes several READDIR requests however large the kernel's buffer
  const names = Array.from({ length: 300 }, (_, i) => `${String(i).padStart(3, '0')}-${'n'.repeat(200)}`)
  mkdirSync(dir)
  for (const n of names) writeFileSync(join(dir, n), '')

  const first = await fuseOps(url)
  t.same(readdirSync(dir).sort(), names, 'every name listed')
  const second = await fuseOps(url)
  t.same(readdirSync(dir).sort(), names, 'listed again')
  const third = await fuseOps(url)
  t.ok(delta(second, first, 'readdirplus') + delta(second, first, 'readdir') >= 1, 'the first listing asked the mount')
  t.equal(delta(third, second, 'readdirplus') + delta(third, second, 'readdir'), 0, 'the second came from the kernel cache')
  t.equal((third.get('opendir') ?? 0) + (third.get('releasedir') ?? 0), 0, 'no opendir or releasedir reached the mount')

  writeFileSync(join(dir, 'local'), '')
  t.ok(readdirSync(dir).includes('local'), "this mount's own create resets the kernel's listing")
  unlinkSync(join(dir, 'local'))
  t.notOk(readdirSync(dir).includes('local'), 'and its unlink')

  const bdir = join(b.dir, 'big')
  t.same(readdirSync(bdir).sort(), names, 'B lists it')
  writeFileSync(join(dir, 'from-a'), '')
  t.ok(await until(() => readdirSync(bdir).includes('from-a'), 2000), "B's cached listing shows A's create once the invalidation arrives")
  writeFileSync(join(bdir, 'from-b'), '')
  t.ok(await until(() => readdirSync(dir).includes('from-b'), 2000), "and A's shows B's")

  const all = readdirSync(dir).sort()
  writeFileSync(join(dir, 'reset'), '') // a change: the next listings go to the mount, not the kernel's cache
  all.push('reset')
  all.sort()
  const before = await fuseOps(url)
  const [x, y] = interleaved(opendirSync(dir, { bufferSize: 8 }), opendirSync(dir, { bufferSize: 8 }))
  const after = await fuseOps(url)
  t.ok(delta(after, before, 'readdirplus') + delta(after, before, 'readdir') >= 4, 'both listings went to the mount, a page at a time')
  t.same(x.sort(), all, 'two listings at once: the first sees every name once')
  t.same(y.sort(), all, 'and so does the second')
})

t.test('DirStreams: a listing goes on from where the kernel stopped, never shared, bounded', async (t) => {
  let now = 0
  const streams = new DirStreams(() => now)
  const s = streams.take(5, 0)
  t.equal(s.pos, 0, 'offset 0: a fresh listing')
  s.buffered.push({ name: 'x', attr: {} as never }, { name: 'y', attr: {} as never })
  s.pos = 10
  streams.put(s, false)
  t.not(streams.take(6, 11), s, 'another inode: not that listing')
  t.not(streams.take(5, 9), s, 'before its window: not that listing')
  t.not(streams.take(5, 13), s, 'past its window: not that listing')
  const again = streams.take(5, 11)
  t.equal(again, s, 'inside its window: the same listing')
  t.not(streams.take(5, 11), s, 'taken: a second reader gets its own')
  streams.put(again, true)
  t.equal(streams.size, 0, 'a listing read to its end is dropped')
  streams.put(again, false)
  now += 31_000
  t.not(streams.take(5, 11), s, 'an idle listing expires')
  for (let i = 0; i < 200; i++) streams.put(streams.take(i, 0), false)
  t.equal(streams.size, 128, 'at most 128 idle listings')
})
