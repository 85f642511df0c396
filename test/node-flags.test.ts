// bin/berth.js's #! line and common/node-flags.ts name the same V8 flags, and each command gets its own GLIBC_TUNABLES
// (test/mount-cli.test.ts checks that the mount daemon runs with them).
import { readFileSync } from 'node:fs'
import t from 'tap'
import { BERTH_BIN } from '../cli/spawn-service'
import { MOUNT_MALLOC_TUNABLES, NODE_FLAGS, serviceEnv } from '../common/node-flags'

t.test('the #! line of bin/berth.js carries NODE_FLAGS', async (t) => {
  const first = readFileSync(BERTH_BIN, 'utf8').split('\n')[0]
  t.equal(first, `#!/usr/bin/env -S node ${NODE_FLAGS.join(' ')}`)
})

t.test('a mount starts with its malloc settings after the user\'s own; other commands with the environment given', async (t) => {
  t.equal(serviceEnv('mount', {}).GLIBC_TUNABLES, MOUNT_MALLOC_TUNABLES)
  t.equal(serviceEnv('mount', { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }).GLIBC_TUNABLES, `glibc.malloc.arena_max=2:${MOUNT_MALLOC_TUNABLES}`)
  for (const command of ['meta', 'node', 'up', 'constructor', 'toString', undefined]) t.same(serviceEnv(command, { A: '1' }), { A: '1' }, `${command ?? 'no command'}: unchanged`)
})
