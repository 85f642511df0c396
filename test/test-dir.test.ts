/**
 * test/helpers/test-dir.ts: a test's folder is removed after the teardowns
 * that stop the processes running in it, not before (with a bare
 * `t.testdir()` called before the first `t.teardown()`, tap removes it
 * first; a busy nats-server then failed the removal and the teardowns never
 * ran: meta-append-route hung in CI).
 */
import { existsSync } from 'node:fs'
import t from 'tap'
import { testDir } from './helpers/test-dir'

const seen: Record<string, boolean> = {}

t.test('a test whose folder came from testDir', async (t) => {
  const dir = testDir(t)
  t.teardown(() => {
    seen.helper = existsSync(dir)
  })
})

t.test('a test whose folder came from a bare t.testdir() (what the helper avoids)', async (t) => {
  const dir = t.testdir()
  t.teardown(() => {
    seen.bare = existsSync(dir)
  })
})

t.test('teardowns and the folder', async (t) => {
  t.equal(seen.helper, true, 'testDir: the teardowns ran while the folder was still there')
  t.equal(seen.bare, false, 'bare t.testdir(): tap had already removed it (if this changes, tap fixed the order)')
})
