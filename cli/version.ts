/**
 * `berth --version`: the package version and the git commit it was built from.
 * The commit is baked into dist/build-info.json by tools/build-info.js (npm run
 * build, npm pack); a development checkout built with plain tsc asks git.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

const ROOT = join(__dirname, '..', '..')

export interface VersionInfo {
  version: string
  commit: string
}

export function versionInfo(): VersionInfo {
  let version = 'unknown'
  try {
    version = String((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version?: unknown }).version ?? 'unknown')
  } catch {
    // keep unknown
  }
  let commit = 'unknown'
  try {
    commit = String((JSON.parse(readFileSync(join(ROOT, 'dist', 'build-info.json'), 'utf8')) as { commit?: unknown }).commit ?? 'unknown')
  } catch {
    try {
      commit = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || 'unknown'
    } catch {
      // neither baked nor a checkout
    }
  }
  return { version, commit }
}

export function versionLine(): string {
  const v = versionInfo()
  return `berth ${v.version} (commit ${v.commit}, node ${process.versions.node})\n`
}
