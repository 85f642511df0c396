// bin/berth.js's #! line and common/node-flags.ts name the same V8 flags
// (test/mount-cli.test.ts checks that the mount daemon runs with them).
import { readFileSync } from 'node:fs'
import t from 'tap'
import { BERTH_BIN } from '../cli/spawn-service'
import { NODE_FLAGS } from '../common/node-flags'

t.test('the #! line of bin/berth.js carries NODE_FLAGS', async (t) => {
  const first = readFileSync(BERTH_BIN, 'utf8').split('\n')[0]
  t.equal(first, `#!/usr/bin/env -S node ${NODE_FLAGS.join(' ')}`)
})
