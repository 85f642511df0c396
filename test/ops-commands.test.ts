/**
 * Operator commands against a real cluster and mount: `berth info` (inode,
 * chunks, blocks, replicas and their nodes; inline files; --from-root; bad
 * paths), `berth gc` (blocks in grace after a delete, an orphan copy found
 * and then collected by `--run`), `berth warmup` (every file read through the
 * mount; off-mount paths refused), and the progress line on a terminal.
 */
import { spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { mkdir, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import t from 'tap'
import type { GcReport } from '../cli/gc'
import { BERTH_BIN } from '../cli/spawn-service'
import type { FileInfo } from '../cli/info'
import { Progress } from '../cli/progress'
import type { WarmupSummary } from '../cli/warmup'
import { berthCli, berthJson } from './helpers/berth-cli'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'
import { blockName } from '../common/block-hash'

// real clusters and mounts, several CLI runs each: one run took 290 s at load 20 on
// this shared 2-core machine, so the file gets 15 min instead of .taprc's 300 s
t.setTimeout(15 * 60_000)

t.test('info, gc and warmup on a real cluster', async (t) => {
  // a long grace keeps deleted blocks visible to gc; reconciliation only when asked (--run)
  const c = await startCluster(t, { nodes: 3, replicas: 2, metaArgs: ['--gc-grace-ms', '3600000', '--orphan-age-ms', '1000', '--reconcile-interval-ms', '3600000'] })
  const m = await mountCluster(t, c)
  await mkdir(join(m.dir, 'dir'))
  const big = randomBytes(9 * 1024 * 1024) // three 4 MiB chunks
  writeFileSync(join(m.dir, 'dir', 'big.bin'), big)
  writeFileSync(join(m.dir, 'small.txt'), 'inline bytes\n')
  writeFileSync(join(m.dir, 'doomed.bin'), randomBytes(5 * 1024 * 1024))
  const meta = await c.metaClient()
  const hello = await meta.call('hello', {})

  await t.test('info', async (t) => {
    const r = await berthJson<FileInfo[]>(t, c, ['info', join(m.dir, 'dir', 'big.bin'), join(m.dir, 'small.txt'), join(m.dir, 'dir')])
    t.equal(r.code, 0, r.stderr)
    const [bigInfo, small, dir] = r.json
    t.equal(bigInfo!.path, '/dir/big.bin', 'the path inside the cluster')
    t.equal(bigInfo!.type, 'file')
    t.equal(bigInfo!.size, big.length)
    t.equal(bigInfo!.inline, false)
    t.equal(bigInfo!.chunks.length, 3, 'three chunks')
    t.equal(bigInfo!.blocks, 3, 'three blocks')
    t.same(bigInfo!.chunks.map((ch) => ch.len), [4 << 20, 4 << 20, 1 << 20])
    const first = big.subarray(0, 4 << 20)
    t.equal(bigInfo!.chunks[0]!.hash, blockName(first, 'blake3'), 'chunk 0 is named by the BLAKE3 of its bytes')
    for (const ch of bigInfo!.chunks) {
      t.equal(ch.replicas.length, 2, `chunk ${ch.idx}: two replicas`)
      for (const rep of ch.replicas) {
        const node = hello.nodes.find((n) => n.id === rep.node)
        t.ok(node, `replica on a known node ${rep.node}`)
        t.equal(rep.url, node?.url, 'with its URL')
        t.equal(rep.alive, true, 'alive')
      }
    }
    t.equal(small!.inline, true, 'a small file is inline')
    t.equal(small!.blocks, 0)
    t.equal(small!.chunks[0]!.hash, null)
    t.equal(dir!.type, 'directory')
    t.equal(dir!.mode, '0755')

    const human = await berthCli(c, ['info', join(m.dir, 'dir', 'big.bin'), join(m.dir, 'small.txt')])
    t.equal(human.code, 0)
    t.match(human.stdout, /inode \d+ {2}file/)
    t.match(human.stdout, /3 chunk\(s\), 3 block\(s\)/)
    t.match(human.stdout, new RegExp(`chunk 0: block ${bigInfo!.chunks[0]!.hash} 4194304 bytes, 2 replica\\(s\\): `))
    t.match(human.stdout, /inline: its 13 bytes are kept in meta/)

    const root = await berthJson<FileInfo[]>(t, c, ['info', '--from-root', '/dir/big.bin'])
    t.equal(root.code, 0)
    t.same(root.json[0]!.chunks, bigInfo!.chunks, '--from-root describes the same file')

    const missing = await berthCli(c, ['info', '--from-root', '/nope/x'])
    t.equal(missing.code, 1, 'a missing path: exit 1')
    t.match(missing.stderr, /no such file in the cluster/)
    t.equal(missing.stdout, '', 'nothing printed')
    const offMount = await berthCli(c, ['info', '/etc/hostname'])
    t.equal(offMount.code, 1, 'a path off any berth mount: exit 1')
    t.match(offMount.stderr, /not on a berth mount/)
    t.equal((await berthCli(c, ['info'])).code, 2, 'no PATH: usage')
  })

  await t.test('gc: blocks in grace after a delete, an orphan found and collected by --run', async (t) => {
    await unlink(join(m.dir, 'doomed.bin'))
    // a copy no file references and meta never heard of: an orphan
    const orphan = randomBytes(100 * 1024)
    const hash = createHash('sha256').update(orphan).digest('hex')
    const res = await fetch(`${hello.nodes[0]!.url}/v1/blocks/${hash}`, { method: 'PUT', body: orphan, headers: { authorization: `Bearer ${c.secret}` } })
    t.equal(res.status, 200, 'orphan PUT straight to a node')
    await res.body?.cancel()
    await new Promise((r) => setTimeout(r, 1500)) // past --orphan-age-ms

    const plan = await berthJson<GcReport>(t, c, ['gc', '--no-progress'])
    t.equal(plan.code, 0, plan.stderr)
    t.equal(plan.json.plan.graceMs, 3600000)
    t.equal(plan.json.plan.inGrace.blocks, 2, "doomed.bin's two blocks wait in the grace")
    t.equal(plan.json.plan.inGrace.bytes, 5 * 1024 * 1024)
    t.equal(plan.json.plan.due.blocks, 0, 'nothing due')
    t.equal(plan.json.orphans?.copies, 1, 'one orphan copy')
    t.equal(plan.json.orphans?.due.copies, 1, 'past its age')
    t.equal(plan.json.orphans?.bytes, orphan.length)
    t.equal(plan.json.run, null, 'nothing run without --run')

    const quick = await berthJson<GcReport>(t, c, ['gc', '--quick'])
    t.equal(quick.json.orphans, null, '--quick skips the inventories')

    const human = await berthCli(c, ['gc', '--quick'])
    t.match(human.stdout, /block GC \(grace 60 min\): 0 block\(s\), 0 B due now/)
    t.match(human.stdout, /in grace: 2 block\(s\), 5\.0 MiB/)

    const ran = await berthJson<GcReport>(t, c, ['gc', '--run', '--no-progress'])
    t.equal(ran.code, 0, ran.stderr)
    t.equal(ran.json.run?.orphansDeleted, 1, 'the orphan moved to trash')
    t.equal(ran.json.run?.blocks, 0, 'blocks in grace are kept')
    const after = await berthJson<GcReport>(t, c, ['gc', '--no-progress'])
    t.equal(after.json.orphans?.copies, 0, 'no orphan left')
    t.equal(after.json.plan.inGrace.blocks, 2)
    t.equal((await berthCli(c, ['gc', 'extra'])).code, 2, 'a stray argument: usage')
  })

  await t.test('warmup', async (t) => {
    const r = await berthJson<WarmupSummary>(t, null, ['warmup', m.dir])
    t.equal(r.code, 0, r.stderr)
    t.equal(r.json.files, 2, 'both files read')
    t.equal(r.json.bytes, big.length + 13)
    t.same(r.json.failed, [])
    const plain = await berthCli(null, ['warmup', join(m.dir, 'dir')])
    t.equal(plain.code, 0)
    t.match(plain.stdout, /^warmup: 1 file\(s\), 9\.0 MiB read in/)
    // on a terminal (script(1) gives the command one): the bar, rewritten in place
    const script = spawnSync('script', ['-qfc', `${process.execPath} ${BERTH_BIN} warmup ${m.dir}`, '/dev/null'], { encoding: 'utf8', timeout: 120_000 })
    if (script.error) t.comment(`no script(1) here (${script.error.message}): terminal bar not checked`)
    else {
      t.equal(script.status, 0, 'warmup on a terminal exits 0')
      t.match(script.stdout, /\rwarmup: \[#{24}\] 100% {2}2\/2 files {2}9\.0 MiB\/9\.0 MiB/, 'a full bar at the end')
    }
    const off = await berthCli(null, ['warmup', m.dir, '/etc'])
    t.equal(off.code, 1, 'a PATH off the mount: exit 1 before reading anything')
    t.match(off.stderr, /\/etc is not on a berth mount/)
    const gone = await berthCli(null, ['warmup', join(m.dir, 'nope')])
    t.equal(gone.code, 1)
    t.match(gone.stderr, /nope: ENOENT/)
  })
})

t.test('progress: a bar rewritten in place on a terminal, plain lines otherwise', async (t) => {
  const capture = (tty: boolean) => {
    const s = new PassThrough()
    let text = ''
    s.on('data', (d: Buffer) => (text += d.toString()))
    Object.assign(s, { isTTY: tty })
    return { stream: s as unknown as NodeJS.WriteStream, text: () => text }
  }
  const tty = capture(true)
  const p = new Progress({ label: 'warmup', enabled: true, total: { files: 4, bytes: 4096 }, stream: tty.stream })
  p.update({ files: 2, bytes: 2048 })
  p.done()
  t.match(tty.text(), /^\rwarmup: \[#{12}-{12}\] 50% {2}2\/4 files {2}2\.0 KiB\/4\.0 KiB {2}.*\/s\x1b\[K\n$/)
  const plain = capture(false)
  const q = new Progress({ label: 'warmup', enabled: true, total: { files: 4, bytes: 4096 }, stream: plain.stream })
  q.update({ files: 4, bytes: 4096 })
  t.match(q.line(), /^warmup: 100% {2}4\/4 files/, 'no bar and no escapes off a terminal')
  q.done()
  t.equal(plain.text(), '', 'a short run off a terminal prints no progress lines')
})
