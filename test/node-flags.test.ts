// bin/berth.js's #! line and common/node-flags.ts name the same V8 flags, and each command gets its own GLIBC_TUNABLES
// (test/mount-cli.test.ts checks that the mount daemon runs with them).
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
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

t.test('wasmBaselineOnly keeps a hot WebAssembly function on Liftoff; without it V8 tiers it up to TurboFan', async (t) => {
  // (module (func (export "f") (param i32) (result i32) local.get 0 i32.const 1 i32.add)), called a
  // million times per step: hot enough for V8's dynamic tiering to compile it with TurboFan. Tier-up
  // compiles on a background thread, so the child keeps calling it and looks again every 50 ms: it
  // says 'turbofan' as soon as that lands (a loaded host only delays it), else after 3 s what it is.
  const child = (baselineOnly: boolean): string =>
    execFileSync(
      process.execPath,
      [
        '--allow-natives-syntax',
        '-e',
        `if (${baselineOnly}) require(${JSON.stringify(join(__dirname, '../common/node-flags'))}).wasmBaselineOnly()
        const bytes = new Uint8Array([0,97,115,109,1,0,0,0,1,6,1,96,1,127,1,127,3,2,1,0,7,5,1,1,102,0,0,10,9,1,7,0,32,0,65,1,106,11])
        const f = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.f
        let x = 0
        const until = Date.now() + 3000
        const step = () => {
          for (let i = 0; i < 1e6; i++) x = f(x)
          if (%IsTurboFanFunction(f)) return console.log('turbofan')
          if (Date.now() >= until) return console.log(%IsLiftoffFunction(f) ? 'liftoff' : 'other')
          setTimeout(step, 50)
        }
        step()`,
      ],
      { encoding: 'utf8' },
    ).trim()
  t.equal(child(true), 'liftoff', 'with wasmBaselineOnly: Liftoff')
  t.equal(child(false), 'turbofan', 'without: TurboFan (the check can tell them apart)')
})
