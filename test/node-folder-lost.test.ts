/**
 * A data node whose block folder disappears under it (removed, or its volume
 * unmounted) stops with the reason instead of heartbeating "up" and answering
 * 500s (node/store-root-watch.ts). Meta then declares it dead and repair
 * brings every block back to R copies on the other nodes, with no command;
 * the files read back intact through the mount.
 */
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { chunkMap } from './helpers/chunk-map'
import { startCluster } from './helpers/cluster'
import { eventually, holders, nodeDirs, stderrWhen, within } from './helpers/lifecycle'
import { mountCluster } from './helpers/mount'
import { MiB } from './helpers/proc'

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

t.test('a node whose block folder is removed stops; its blocks are re-protected', { timeout: 240_000 }, async (t) => {
  const c = await startCluster(t, { nodes: 3, replicas: 2, metaArgs: ['--repair-interval-ms', '1000'] })
  const m = await mountCluster(t, c)
  const files = new Map<string, string>()
  for (let i = 0; i < 4; i++) {
    const data = randomBytes(6 * MiB)
    writeFileSync(join(m.dir, `f${i}`), data)
    files.set(`f${i}`, sha(data))
  }
  const hashes = new Set<string>()
  for (const name of files.keys()) for (const ch of await chunkMap(c, statSync(join(m.dir, name)).ino)) if (ch.hash) hashes.add(ch.hash)
  const dirs = nodeDirs(c)
  // the node holding the most copies
  const held = dirs.map((d) => [...hashes].filter((h) => holders(c, h).includes(d)).length)
  const victim = held.indexOf(Math.max(...held))
  t.ok(held[victim]! > 0, `node ${victim} holds ${held[victim]} of ${hashes.size} blocks`)
  const node = c.nodes[victim]!
  const exited = new Promise<number | null>((resolve) => node.child.once('exit', (code) => resolve(code)))

  rmSync(dirs[victim]!, { recursive: true, force: true })
  const code = await within(exited, 30_000, 'still running after 30 s')
  t.equal(code, 1, 'the node stopped with exit status 1')
  // 'exit' can come before the last of its stderr
  const said = /block folder .* is gone or unreadable \(ENOENT\): stopping/
  t.match(await stderrWhen(node, said), said, 'and said why')

  const others = dirs.filter((_, i) => i !== victim)
  const whole = () => [...hashes].every((h) => holders(c, h).filter((d) => others.includes(d)).length >= 2)
  t.ok(await eventually(whole, 120_000, 500), 'every block has 2 copies on the two other nodes again')
  // a fresh mount: nothing cached, every block read from the two nodes left
  const fresh = await mountCluster(t, c)
  for (const [name, want] of files) t.equal(sha(readFileSync(join(fresh.dir, name))), want, `${name} reads back intact from a fresh mount`)
})
