/**
 * meta's SQLite page cache (`--cache-mb`, docs/meta.md#durability): parsed
 * with bounds, and set on both of meta's connections.
 */
import { join } from 'node:path'
import t from 'tap'
import { parseConfig } from '../meta/config'
import { migrate } from '../meta/schema'
import { openDatabase } from '../meta/sqlite'
import { testDir } from './helpers/test-dir'

const base = ['--nats', 'nats://127.0.0.1:4222', '--db', '/tmp/x.db']
const env = { BERTH_SECRET: 'a-secret-of-enough-length' }

t.test('--cache-mb: default 128, bounds checked', async (t) => {
  t.equal(parseConfig(base, env)!.cacheMb, 128)
  t.equal(parseConfig([...base, '--cache-mb', '512'], env)!.cacheMb, 512)
  t.throws(() => parseConfig([...base, '--cache-mb', '1'], env), { code: 'EINVAL' }, 'below 2 MiB')
  t.throws(() => parseConfig([...base, '--cache-mb', 'lots'], env), { code: 'EINVAL' }, 'not a number')
})

t.test('both connections get the cache size', async (t) => {
  const db = await openDatabase(join(testDir(t), 'meta.db'), migrate, { sync: 'normal', cacheMb: 64 })
  t.teardown(() => db.close())
  t.equal((await db.read.get<{ cache_size: number }>('PRAGMA cache_size'))?.cache_size, -64 * 1024, 'reader')
  const w = await db.write((tx) => tx.get<{ cache_size: number }>('PRAGMA cache_size'))
  t.equal(w?.cache_size, -64 * 1024, 'writer')
})
