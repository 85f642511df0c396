/**
 * The kernel's readahead for this mount, raised to what berth asked for.
 *
 * FUSE_INIT's max_readahead can only lower the readahead window the kernel
 * gives a new FUSE mount (VM_READAHEAD_PAGES, 128 KiB): berth asks for 1 MiB
 * (client/native/berth-fuse.c ll_init) and gets 128 KiB. A sequential read
 * then reaches the mount as 128 KiB READs, eight round trips for each 1 MiB
 * request the mount takes, one at a time. The window is the mount's
 * backing_dev_info's, which root may set through sysfs after mounting (as
 * JuiceFS does): `/sys/class/bdi/MAJOR:MINOR/read_ahead_kb`. docs/bench.md
 * "Cold reads: the kernel's readahead window" has the figures.
 */
import { readFile, writeFile } from 'node:fs/promises'

/** The MAJOR:MINOR of the FUSE mount at `mountpoint`, from /proc/self/mountinfo; null if it is not there. */
export function mountDevice(mountinfo: string, mountpoint: string): string | null {
  let found: string | null = null
  for (const line of mountinfo.split('\n')) {
    // id parent MAJOR:MINOR root mountpoint options ... - fstype source superoptions
    const f = line.split(' ')
    const sep = f.indexOf('-')
    if (f.length < 5 || sep < 0) continue
    const fstype = f[sep + 1] ?? ''
    if (!fstype.startsWith('fuse')) continue
    if (unescapeMountinfo(f[4]!) !== mountpoint) continue
    found = f[2]! // the last one: a mount over an older one at the same path
  }
  return found
}

/** mountinfo writes space, tab, newline and backslash in paths as octal escapes. */
function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)))
}

/**
 * Sets the readahead window of the FUSE mount at `mountpoint` to `kib`.
 * Resolves with the sysfs file written; rejects where that is not allowed
 * (not root, a read-only /sys in a container): the kernel's 128 KiB stays.
 */
export async function setKernelReadahead(mountpoint: string, kib: number): Promise<string> {
  const dev = mountDevice(await readFile('/proc/self/mountinfo', 'utf8'), mountpoint)
  if (!dev || !/^\d+:\d+$/.test(dev)) throw new Error(`${mountpoint} is not in /proc/self/mountinfo`)
  const file = `/sys/class/bdi/${dev}/read_ahead_kb`
  await writeFile(file, `${kib}\n`)
  return file
}
