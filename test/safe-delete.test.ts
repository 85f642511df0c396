/**
 * Safe deletes (docs/data-node.md#block-lifecycle), driven exactly:
 * - on a node: a delete whose token predates a deduplicated re-PUT keeps the
 *   copy; a later one moves it to trash;
 * - the GC/dedup race through meta: a file deleted, the grace passing while
 *   the same content is re-uploaded through the pinned path and not committed,
 *   then the commit: the block reads back intact from both replicas;
 * - the old interleaving: GC decided (rows removed) before the re-upload, its
 *   delete arriving after it: the re-uploaded copies survive;
 * - a commit naming a block meta does not know is refused (ESTALE); two pinned
 *   uploads of one content by one session are both protected.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { logger } from '../common/log'
import { ROOT_INO, type NodeCommand } from '../common/protocol'
import { request, subjects } from '../common/wire'
import { collectGarbage } from '../meta/block-gc'
import type { AskNode } from '../meta/node-commands'
import { nodeAsker } from '../meta/node-commands'
import { migrate } from '../meta/schema'
import { openDatabase } from '../meta/sqlite'
import { startCluster } from './helpers/cluster'
import { blockClient, blockPath, eventually, holders, nodeDirs, pinned, sleep } from './helpers/lifecycle'
import { blockName } from '../common/block-hash'

const REG = 0o100644
const who = { uid: 0, gid: 0 }

t.test('node: a delete decided before a re-PUT keeps the copy; trash then purge', async (t) => {
  const c = await startCluster(t, { nodes: 1, nodeArgs: ['--trash-hours', String(2 / 3600)] })
  const bc = await blockClient(t, c, 1)
  const nc = await c.connect('meta')
  const node = String(c.nodes[0]!.ready.id)
  const cmd = <T>(body: NodeCommand) => request<T>(nc, subjects(c.cluster).nodeCmd(node), body)
  const data = randomBytes(100_000)
  const { hash } = await bc.put(data)
  const { now: token } = await cmd<{ now: number }>({ op: 'clock' })
  await sleep(5)
  await bc.put(data) // deduplicated: the node touches its copy
  t.match(await cmd({ op: 'delete', hashes: [hash], putBefore: token }), { deleted: 0, kept: [hash] }, 'kept: PUT after the token')
  t.ok(existsSync(blockPath(nodeDirs(c)[0]!, hash)), 'copy still there')
  const { now: later } = await cmd<{ now: number }>({ op: 'clock' })
  t.match(await cmd({ op: 'delete', hashes: [hash], putBefore: later + 1 }), { deleted: 1, kept: [] }, 'deleted: no PUT since')
  const trash = join(nodeDirs(c)[0]!, 'trash')
  t.ok(readdirSync(trash).some((n) => n.endsWith(hash)), 'moved to trash')
  t.ok(await eventually(() => !readdirSync(trash).some((n) => n.endsWith(hash)), 15_000), 'purged after --trash-hours')
})

t.test('GC/dedup race through meta: re-uploaded while the grace passes, committed after', async (t) => {
  const c = await startCluster(t, { nodes: 2, replicas: 2, metaArgs: ['--gc-grace-ms', '300'] })
  const bc = await blockClient(t, c, 2)
  const meta = await c.metaClient()
  const data = randomBytes(1024 * 1024)
  const first = pinned(bc, meta, 'writer-1')
  const a = (await meta.call('mknod', { parent: ROOT_INO, name: 'a', mode: REG, ...who })).attr
  const put1 = await first.put(data)
  await meta.call('commit', { ino: a.ino, session: 'writer-1', size: data.length, chunks: [{ idx: 0, hash: put1.hash, len: data.length, nodes: put1.nodes }] })
  await meta.call('unlink', { parent: ROOT_INO, name: 'a' }) // refs 0: the grace starts

  const second = pinned(bc, meta, 'writer-2')
  const put2 = await second.put(data) // same content: deduplicated on both nodes
  t.same(put2.hash, put1.hash)
  await sleep(2000) // grace (300 ms) passes several GC passes over
  const b = (await meta.call('mknod', { parent: ROOT_INO, name: 'b', mode: REG, ...who })).attr
  await meta.call('commit', { ino: b.ino, session: 'writer-2', size: data.length, chunks: [{ idx: 0, hash: put2.hash, len: data.length, nodes: put2.nodes }] })
  const chunks = (await meta.call('chunks', { ino: b.ino })).chunks
  t.equal(chunks[0]?.nodes.length, 2, 'two replicas listed')
  t.equal(holders(c, put2.hash).length, 2, 'both copies on disk')
  for (const n of chunks[0]!.nodes) t.ok((await bc.get(put2.hash, [n])).equals(data), `intact on ${n}`)

  // a block nobody pinned and meta no longer knows cannot be committed
  await sleep(1000)
  const gone = randomBytes(70_000)
  await t.rejects(
    meta.call('commit', { ino: b.ino, session: 'writer-3', size: gone.length, chunks: [{ idx: 0, hash: blockName(gone, 'blake3'), len: gone.length, nodes: put2.nodes }] }),
    { code: 'ESTALE' },
    'commit of an unknown, unpinned block: ESTALE',
  )
})

t.test('the old interleaving: delete decided, then re-upload, then the delete arrives', async (t) => {
  // meta's own GC is kept idle (1 h grace); the test runs the real GC code
  // against meta's database and holds its delete back to place the re-upload
  const c = await startCluster(t, { nodes: 2, replicas: 2, metaArgs: ['--gc-grace-ms', '3600000'] })
  const bc = await blockClient(t, c, 2)
  const meta = await c.metaClient()
  const data = randomBytes(512 * 1024)
  const a = (await meta.call('mknod', { parent: ROOT_INO, name: 'a', mode: REG, ...who })).attr
  const put1 = await pinned(bc, meta, 'w1').put(data)
  await meta.call('commit', { ino: a.ino, session: 'w1', size: data.length, chunks: [{ idx: 0, hash: put1.hash, len: data.length, nodes: put1.nodes }] })
  await meta.call('unlink', { parent: ROOT_INO, name: 'a' })

  const db = await openDatabase(join(c.dir, 'meta.db'), migrate)
  t.teardown(() => db.close())
  const real = nodeAsker(await c.connect('meta'), c.cluster)
  let deleteHeld!: () => void
  const held = new Promise<void>((r) => (deleteHeld = r))
  let releaseDelete!: () => void
  const release = new Promise<void>((r) => (releaseDelete = r))
  const holding = ((node: string, cmd: NodeCommand, ms: number) => {
    if (cmd.op !== 'delete') return real(node, cmd as NodeCommand & { op: 'clock' }, ms)
    deleteHeld()
    return release.then(() => real(node, cmd as NodeCommand & { op: 'delete' }, ms))
  }) as AskNode
  const gc = collectGarbage({ db }, holding, logger('test-gc'), 0)
  await held // rows removed: the delete is decided and on its way
  t.notOk(await db.read.get('SELECT 1 AS x FROM blocks WHERE hash = ?', [put1.hash]), 'GC removed the block row')

  const put2 = await pinned(bc, meta, 'w2').put(data) // re-upload through the pinned path
  releaseDelete()
  t.equal((await gc).blocks, 1, 'GC collected the block')
  t.equal(holders(c, put2.hash).length, 2, 'the delete kept both re-uploaded copies')
  const b = (await meta.call('mknod', { parent: ROOT_INO, name: 'b', mode: REG, ...who })).attr
  await meta.call('commit', { ino: b.ino, session: 'w2', size: data.length, chunks: [{ idx: 0, hash: put2.hash, len: data.length, nodes: put2.nodes }] })
  for (const n of put2.nodes) t.ok((await bc.get(put2.hash, [n])).equals(data), `intact on ${n}`)
})

t.test('pins are counted: two uploads of one content, one committed, the other still protected', async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1, metaArgs: ['--gc-grace-ms', '200'] })
  const bc = await blockClient(t, c, 1)
  const meta = await c.metaClient()
  const zeros = Buffer.alloc(256 * 1024)
  const up = pinned(bc, meta, 's')
  const p1 = await up.put(zeros)
  const p2 = await up.put(zeros)
  const f1 = (await meta.call('mknod', { parent: ROOT_INO, name: 'f1', mode: REG, ...who })).attr
  await meta.call('commit', { ino: f1.ino, session: 's', size: zeros.length, chunks: [{ idx: 0, hash: p1.hash, len: zeros.length, nodes: p1.nodes }] })
  await meta.call('unlink', { parent: ROOT_INO, name: 'f1' })
  await sleep(1500) // past the grace: only the second upload's pin protects the block now
  const f2 = (await meta.call('mknod', { parent: ROOT_INO, name: 'f2', mode: REG, ...who })).attr
  await meta.call('commit', { ino: f2.ino, session: 's', size: zeros.length, chunks: [{ idx: 0, hash: p2.hash, len: zeros.length, nodes: p2.nodes }] })
  t.ok((await bc.get(p2.hash, p2.nodes)).equals(zeros), 'second upload committed and intact')
})
