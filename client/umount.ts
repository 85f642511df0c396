/**
 * `berth umount MOUNTPOINT`: asks the mount daemon to flush and unmount
 * (SIGTERM), waits for it to go; without a daemon, `fusermount -u`.
 */
import { spawnSync } from 'node:child_process'
import { statSync } from 'node:fs'
import { resolve } from 'node:path'
import { BerthError } from '../common/errors'
import { isAlive } from '../common/process-alive'
import { isMounted, readPid } from './mount-state'

const HELP = `usage: berth umount MOUNTPOINT [--timeout-ms 60000]
Flushes dirty data and unmounts a berth mount. A crashed mount (its daemon
gone, "Transport endpoint is not connected") is detached.

Exit status: 0 when unmounted, 1 with the reason on stderr otherwise
(not mounted, still busy, daemon did not exit in time).
`

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export async function run(argv: string[]): Promise<void> {
  const args = argv.filter((a) => !a.startsWith('-'))
  if (argv.includes('--help') || argv.includes('-h') || args.length === 0) {
    process.stdout.write(HELP)
    return
  }
  const ti = argv.indexOf('--timeout-ms')
  const timeoutMs = ti >= 0 ? Number(argv[ti + 1]) : 60_000
  const mountpoint = resolve(args[0] === String(timeoutMs) ? (args[1] ?? '') : args[0])
  const pid = readPid(mountpoint)
  if (pid !== null && isAlive(pid)) {
    process.kill(pid, 'SIGTERM')
    const until = Date.now() + timeoutMs
    while (isAlive(pid) && Date.now() < until) await sleep(100)
    if (isAlive(pid)) {
      throw new BerthError('ETIMEDOUT', `mount daemon ${pid} did not exit within ${timeoutMs} ms (still flushing, or stuck)\n` +
        `  hint: wait and retry, or \`kill -9 ${pid}\` then \`berth umount ${mountpoint}\` (unflushed writes are lost)`)
    }
    if (!isMounted(mountpoint)) return
    // the daemon ended without unmounting: fall through and detach what it left
  }
  if (!isMounted(mountpoint)) throw new BerthError('EINVAL', `${mountpoint} is not mounted`)
  // No daemon behind the mount: it crashed (the kernel answers ENOTCONN) or was
  // mounted by something else. A crashed mount has nothing left to flush, so a
  // lazy detach is safe even while a shell still sits in it.
  const crashed = isCrashed(mountpoint)
  const r = spawnSync('fusermount', crashed ? ['-uz', mountpoint] : ['-u', mountpoint], { encoding: 'utf8' })
  if (r.status !== 0 || isMounted(mountpoint)) {
    const why = (r.stderr || r.error?.message || '').trim()
    throw new BerthError('EBUSY', `cannot unmount ${mountpoint}${why ? `: ${why}` : ''}\n` +
      `  hint: close the files and shells using it (\`fuser -vm ${mountpoint}\`), or detach it lazily: fusermount -uz ${mountpoint}`)
  }
  if (crashed) process.stderr.write(`berth umount: ${mountpoint} was a crashed mount (its daemon${pid !== null ? ` pid ${pid}` : ''} is gone); detached it\n`)
}

/** stat on a mount whose daemon died fails with ENOTCONN. */
function isCrashed(mountpoint: string): boolean {
  try {
    statSync(mountpoint)
    return false
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    return code === 'ENOTCONN' || code === 'ECONNABORTED'
  }
}
