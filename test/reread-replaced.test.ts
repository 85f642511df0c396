/**
 * A mount reads a file through a descriptor opened before another mount
 * rewrote it in place (`>` truncates and writes: new blocks, the old ones
 * unreferenced). Meta's GC deletes the old blocks a grace later, and the
 * reader's map still names them: its next read failed with EIO. It now
 * fetches the map again when meta's content generation moved and reads what
 * the file holds now, as a local file system shows a rewrite to a
 * descriptor opened before it (client/vfs.ts rereadIfReplaced).
 */
import { randomBytes } from 'node:crypto'
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { startCluster } from './helpers/cluster'
import { eventually, holders } from './helpers/lifecycle'
import { mountCluster } from './helpers/mount'
import { blockName } from '../common/block-hash'

const MiB = 2 ** 20

t.test('a read through a descriptor opened before another mount rewrote the file, after the old blocks were collected', async (t) => {
  const c = await startCluster(t, { nodes: 2, replicas: 2, metaArgs: ['--gc-grace-ms', '1000'] })
  const a = await mountCluster(t, c)
  const b = await mountCluster(t, c)
  const old = randomBytes(12 * MiB)
  writeFileSync(join(b.dir, 'f'), old)
  const fd = openSync(join(a.dir, 'f'), 'r')
  t.teardown(() => closeSync(fd))
  // a read mid-file (not a stream: no whole blocks fetched ahead)
  const page = Buffer.alloc(4096)
  readSync(fd, page, 0, page.length, 5 * MiB)
  t.ok(page.equals(old.subarray(5 * MiB, 5 * MiB + 4096)), 'A reads the old content')

  const fresh = randomBytes(12 * MiB)
  writeFileSync(join(b.dir, 'f'), fresh)
  const oldLast = blockName(old.subarray(8 * MiB), 'blake3')
  t.ok(await eventually(() => holders(c, oldLast).length === 0, 20_000), 'the old last block is collected from every node')

  const at = 8 * MiB + 1234567
  const got = Buffer.alloc(65536)
  let n = -1
  let error = ''
  try {
    n = readSync(fd, got, 0, got.length, at)
  } catch (err) {
    error = (err as NodeJS.ErrnoException).code ?? String(err)
  }
  t.equal(error, '', 'the read does not fail (before: EIO)')
  t.equal(n, got.length)
  t.ok(got.equals(fresh.subarray(at, at + got.length)), 'it returns what the file holds now')
  // the kernel's page of the old content read before is dropped too
  t.ok(
    await eventually(() => {
      readSync(fd, page, 0, page.length, 5 * MiB)
      return page.equals(fresh.subarray(5 * MiB, 5 * MiB + 4096))
    }, 5000, 50),
    'a page read before the rewrite now reads the new content',
  )
})
