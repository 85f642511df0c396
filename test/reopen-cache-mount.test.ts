/**
 * Reopening without a meta request on real mounts (client/closed-files.ts,
 * docs/semantics.md#reopening-without-a-meta-request): two mounts of one
 * cluster, a real nats-server, files written and read with real processes
 * and Node's fs. Close-to-open holds on every round, and the kept maps are
 * used (the mounts' counters say so); with a NATS cluster, where a PING to
 * one server proves nothing about messages still on a route, they are not.
 */
import { randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { startCluster } from './helpers/cluster'
import { mountCounter } from './helpers/fuse-ops'
import { mountCluster, type TestMount } from './helpers/mount'

const hits = (m: TestMount) => mountCounter(String(m.client.ready.metrics), 'berth_client_reopen_cache_hits_total')
const metrics = ['-o', 'metrics=127.0.0.1:0']

function cat(path: string): string {
  const r = spawnSync('cat', [path], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`cat ${path}: ${r.stderr}`)
  return r.stdout
}

t.test('two mounts: every open sees the last close, and unchanged files reopen from the kept map', async (t) => {
  const c = await startCluster(t, { nodes: 2 })
  const a = await mountCluster(t, c, { args: metrics })
  const b = await mountCluster(t, c, { args: metrics })
  const fa = join(a.dir, 'f')
  const fb = join(b.dir, 'f')

  writeFileSync(fa, 'first\n')
  let before = await hits(a)
  t.equal(cat(fa), 'first\n')
  t.equal(cat(fa), 'first\n')
  t.equal((await hits(a)) - before, 2, 'A reopens its own file twice without asking meta')

  // alternating writers, each read at once by the other mount and by itself
  const stale: string[] = []
  for (let i = 0; i < 150; i++) {
    const [w, r] = i % 2 ? [fa, fb] : [fb, fa]
    const v = `round ${i} ${'x'.repeat(i % 7)}\n`
    writeFileSync(w, v)
    const seen = [readFileSync(r, "utf8"), cat(r), cat(w)]
    if (seen.some((s) => s !== v)) stale.push(`round ${i}: ${JSON.stringify(seen)}`)
  }
  t.same(stale, [], 'no open read anything but the last close (150 rounds, 450 opens)')

  before = await hits(b)
  t.equal(cat(fb), 'round 149 xx\n')
  t.equal((await hits(b)) - before, 1, 'B, which read the last version already, reopens it from the kept map')

  // The exact interleaving the barrier exists for: A's mount is stopped while
  // B commits, so meta's invalidation and the kernel's OPEN are both waiting
  // for A when it resumes, in whatever order its event loop takes them.
  const raced: string[] = []
  for (let i = 0; i < 20; i++) {
    t.equal(cat(fa), readFileSync(fb, 'utf8'), 'A has the current version (kept)')
    process.kill(a.client.pid, 'SIGSTOP')
    const v = `stopped round ${i}\n`
    let reading: Promise<string> | undefined
    try {
      writeFileSync(fb, v)
      // the OPEN waits in A's /dev/fuse queue, the invalidation in its socket
      reading = readFile(fa, 'utf8')
      await new Promise((r) => setTimeout(r, 30))
    } finally {
      process.kill(a.client.pid, 'SIGCONT')
    }
    const got = await reading
    if (got !== v) raced.push(`round ${i}: ${JSON.stringify(got)}`)
  }
  t.same(raced, [], 'an open that reached A together with the invalidation reads the new version (20 rounds)')

  // a file in blocks: one chunk rewritten in place on A, then read on B
  const big = randomBytes(3 * 1024 * 1024 + 7)
  writeFileSync(join(a.dir, 'big'), big)
  t.ok(readFileSync(join(b.dir, 'big')).equals(big), 'B reads the blocks')
  t.ok(readFileSync(join(b.dir, 'big')).equals(big), 'and again (kept map, block refs)')
  const patch = randomBytes(4096)
  const fd = openSync(join(a.dir, 'big'), 'r+')
  writeSync(fd, patch, 0, patch.length, 1024 * 1024 + 100)
  closeSync(fd)
  patch.copy(big, 1024 * 1024 + 100)
  t.ok(readFileSync(join(b.dir, 'big')).equals(big), 'B reads the patched chunk after A\'s close')
})

t.test('on a NATS cluster (a PING to one server proves nothing about its routes) a getattr checks the kept map', async (t) => {
  const c = await startCluster(t, { nodes: 2, natsServers: 3 })
  const servers = c.natsCluster!.servers
  // the two mounts on different servers: every invalidation between them crosses a route
  const a = await mountCluster(t, c, { args: metrics, natsUrl: servers[1]!.url })
  const b = await mountCluster(t, c, { args: metrics, natsUrl: servers[2]!.url })
  const fa = join(a.dir, 'f')
  const fb = join(b.dir, 'f')
  writeFileSync(fa, 'one\n')
  t.equal(cat(fa), 'one\n')
  t.equal(cat(fa), 'one\n')
  t.equal(await hits(a), 2, 'both reopens used the kept map')
  const stale: string[] = []
  for (let i = 0; i < 40; i++) {
    const [w, r] = i % 2 ? [fa, fb] : [fb, fa]
    const v = `round ${i}\n`
    writeFileSync(w, v)
    const seen = [readFileSync(r, 'utf8'), cat(r), cat(w)]
    if (seen.some((x) => x !== v)) stale.push(`round ${i}: ${JSON.stringify(seen)}`)
  }
  t.same(stale, [], 'no open read anything but the last close (40 rounds across servers)')
})
