#!/usr/bin/env node
// Bakes the git commit into dist/build-info.json at build time (npm run build,
// npm pack), so `berth --version` names it also where there is no .git.
'use strict'
const { execFileSync } = require('node:child_process')
const { mkdirSync, writeFileSync } = require('node:fs')
const { join } = require('node:path')

const root = join(__dirname, '..')
let commit = 'unknown'
try {
  commit = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  if (dirty) commit += '-dirty'
} catch {
  // not a git checkout (e.g. building from an unpacked tarball): keep "unknown"
}
mkdirSync(join(root, 'dist'), { recursive: true })
writeFileSync(join(root, 'dist', 'build-info.json'), JSON.stringify({ commit, builtAt: new Date().toISOString() }) + '\n')
