import type { Test } from 'tap'

type FixtureContent = Parameters<Test['testdir']>[0]

/**
 * `t.testdir()` for a test that starts processes in the folder. tap removes a
 * test's folder when the test ends, and when `testdir()` came before the
 * test's first `teardown()`, it removes it *before* the teardowns run
 * (@tapjs/after wraps the end hook @tapjs/fixture installed): while the
 * nats-servers, metas and nodes those teardowns stop still write there. A
 * busy nats-server then made the removal fail (ENOTEMPTY), which skipped the
 * teardowns, left the processes running and hung the file until tap's
 * timeout (meta-append-route in CI). A teardown registered first puts the
 * removal after all of them.
 */
export function testDir(t: Test, content?: FixtureContent): string {
  t.teardown(() => undefined)
  return t.testdir(content)
}
