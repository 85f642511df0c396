/**
 * `berth --version`: the package version and the git commit it was built from.
 * The commit is baked into dist/build-info.json by tools/build-info.js (npm run
 * build, npm pack) for installed packages; a development checkout asks git.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
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
  // a checkout asks git (a baked file there may be from an older build);
  // an installed package has no .git and uses what npm pack baked in
  let commit = existsSync(join(ROOT, '.git')) ? gitCommit() : bakedCommit()
  if (commit === 'unknown') commit = bakedCommit()
  return { version, commit }
}

export function versionLine(): string {
  const v = versionInfo()
  return `berth ${v.version} (commit ${v.commit}, node ${process.versions.node})\n`
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || 'unknown'
  } catch {
    return 'unknown'
  }
}

function bakedCommit(): string {
  try {
    return String((JSON.parse(readFileSync(join(ROOT, 'dist', 'build-info.json'), 'utf8')) as { commit?: unknown }).commit ?? 'unknown')
  } catch {
    return 'unknown'
  }
}
