#!/usr/bin/env -S node --initial-old-space-size=128 --no-memory-reducer
// V8 flags on the #! line: common/node-flags.ts says why (test/node-flags.test.ts keeps them equal)
'use strict'
require('../dist/cli/main.js').main(process.argv.slice(2))
