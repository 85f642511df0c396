/**
 * `berth umount MOUNTPOINT`: unmounts as umount(8) does (EBUSY while in
 * use; `-l` detaches lazily) and waits for the mount daemon to flush and
 * exit; a crashed mount (no daemon) is detached.
 */
import { spawnSync } from 'node:child_process'
import { resolve } from 'node:path'
import { BerthError } from '../common/errors'
import { isAlive } from '../common/process-alive'
import { isDeadMount, isMounted, readPid } from './mount-state'

const HELP = `usage: berth umount MOUNTPOINT [-l|--lazy] [--timeout-ms 60000]
Unmounts a berth mount, as umount(8) does any FUSE mount: refused (EBUSY,
nothing changes) while a process has a file, a directory or its working
directory on it; the daemon then sends what is still buffered to the cluster
and exits. A crashed mount (its daemon gone, "Transport endpoint is not
connected") is detached.

  -l, --lazy     detach it now (umount -l): it disappears from the directory
                 tree at once, keeps serving the processes still in it, and its
                 daemon exits when the last of them leaves

Exit status: 0 when unmounted (or, with -l, detached), 1 with the reason on
stderr otherwise (not mounted, busy, daemon did not exit in time).
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
  const lazy = argv.includes('-l') || argv.includes('--lazy')
  const mountpoint = resolve(args[0] === String(timeoutMs) ? (args[1] ?? '') : args[0])
  const pid = readPid(mountpoint)
  if (pid !== null && isAlive(pid) && isMounted(mountpoint)) {
    // The kernel decides, as for any FUSE mount: busy is refused and changes
    // nothing. (A SIGTERM to the daemon, as this did before, detached a busy
    // mount lazily and exited: the shells and open files still in it got
    // ENOTCONN.) Unmounted, the daemon flushes what it still buffers
    // (pipelined unlinks and releases) and exits (client/main.ts).
    const r = spawnSync('fusermount', lazy ? ['-uz', mountpoint] : ['-u', mountpoint], { encoding: 'utf8' })
    if (r.status !== 0 && isMounted(mountpoint)) {
      const why = (r.stderr || r.error?.message || '').trim()
      throw new BerthError('EBUSY', `cannot unmount ${mountpoint}${why ? `: ${why}` : ''}\n` +
        `  hint: close the files and shells using it (\`fuser -vm ${mountpoint}\`), or detach it lazily: berth umount -l ${mountpoint}`)
    }
    // detached: the daemon serves whoever is still in it and exits after the last one
    if (lazy) return
    const until = Date.now() + timeoutMs
    while (isAlive(pid) && Date.now() < until) await sleep(100)
    if (isAlive(pid)) {
      throw new BerthError('ETIMEDOUT', `${mountpoint} is unmounted, but its daemon ${pid} did not exit within ${timeoutMs} ms (still sending buffered changes, or stuck)\n` +
        `  hint: wait; \`kill ${pid}\` makes it stop`)
    }
    return
  }
  if (!isMounted(mountpoint)) throw new BerthError('EINVAL', `${mountpoint} is not mounted`)
  // No daemon behind the mount: it crashed (the kernel answers ENOTCONN) or was
  // mounted by something else. A crashed mount has nothing left to flush, so a
  // lazy detach is safe even while a shell still sits in it.
  const crashed = isDeadMount(mountpoint)
  const r = spawnSync('fusermount', crashed || lazy ? ['-uz', mountpoint] : ['-u', mountpoint], { encoding: 'utf8' })
  if (r.status !== 0 || isMounted(mountpoint)) {
    const why = (r.stderr || r.error?.message || '').trim()
    throw new BerthError('EBUSY', `cannot unmount ${mountpoint}${why ? `: ${why}` : ''}\n` +
      `  hint: close the files and shells using it (\`fuser -vm ${mountpoint}\`), or detach it lazily: fusermount -uz ${mountpoint}`)
  }
  if (crashed) process.stderr.write(`berth umount: ${mountpoint} was a crashed mount (its daemon${pid !== null ? ` pid ${pid}` : ''} is gone); detached it\n`)
}
