/**
 * One `berth up` per folder. A second one on the same --dir would start a
 * second meta on the same meta.db, duplicate nodes on the same block folders
 * and rewrite client.env and nats.conf under the running cluster. The lock is
 * DIR/up.pid, created with O_EXCL before anything else in DIR is touched; a
 * lock whose process is gone is stale and taken over.
 */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { BerthError } from '../common/errors'
import { isAlive } from '../common/process-alive'

interface LockInfo {
  pid: number
  startedAt: string
}

export interface UpLock {
  path: string
  /** Removes the lock if it is still ours; safe to call twice. */
  release(): void
}

export function acquireUpLock(dir: string): UpLock {
  const path = join(dir, 'up.pid')
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number
    try {
      fd = openSync(path, 'wx', 0o600)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const holder = readLock(path)
      if (holder && holder.pid !== process.pid && isAlive(holder.pid) && isBerth(holder.pid)) {
        throw new BerthError('EBUSY', `another \`berth up\` (pid ${holder.pid}, started ${holder.startedAt}) already runs on ${dir}\n` +
          `  hint: use it (\`berth status --credentials ${join(dir, 'client.env')}\`), stop it (Ctrl-C in its terminal, or kill ${holder.pid}), or pick another --dir`)
      }
      // stale: its process is gone (crash, kill -9, reboot)
      rmSync(path, { force: true })
      continue
    }
    const info: LockInfo = { pid: process.pid, startedAt: new Date().toISOString() }
    writeSync(fd, JSON.stringify(info) + '\n')
    closeSync(fd)
    let released = false
    return {
      path,
      release() {
        if (released) return
        released = true
        if (readLock(path)?.pid === process.pid) rmSync(path, { force: true })
      },
    }
  }
  throw new BerthError('EBUSY', `cannot take the lock ${path}: another \`berth up\` is starting on ${dir}`)
}

function readLock(path: string): LockInfo | null {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockInfo>
    return typeof v.pid === 'number' ? { pid: v.pid, startedAt: String(v.startedAt ?? '?') } : null
  } catch {
    return null
  }
}

/** A recycled pid (after a reboot) that is not berth does not hold the folder. */
function isBerth(pid: number): boolean {
  try {
    return /berth/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'))
  } catch {
    return true
  }
}
