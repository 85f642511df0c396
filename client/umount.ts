/**
 * `berth umount MOUNTPOINT`: asks the mount daemon to flush and unmount
 * (SIGTERM), waits for it to go; without a daemon, `fusermount -u`.
 */
import { spawnSync } from 'node:child_process'
import { resolve } from 'node:path'
import { BerthError } from '../common/errors'
import { isAlive, isMounted, readPid } from './mount-state'

const HELP = `usage: berth umount MOUNTPOINT [--timeout-ms 60000]
Flushes dirty data and unmounts a berth mount.
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
    if (isAlive(pid)) throw new BerthError('ETIMEDOUT', `mount daemon ${pid} did not exit within ${timeoutMs} ms`)
    return
  }
  if (!isMounted(mountpoint)) throw new BerthError('EINVAL', `${mountpoint} is not mounted`)
  const r = spawnSync('fusermount', ['-u', mountpoint], { stdio: 'inherit' })
  if (r.status !== 0) throw new BerthError('EBUSY', `fusermount -u ${mountpoint} failed`)
}
