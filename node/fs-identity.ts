/**
 * Which filesystem a node's blocks live on, as one string that is equal for
 * every node on the same disk of the same machine: "<kernel boot id>:<st_dev>".
 * The boot id (not the hostname) is shared by containers on one kernel, so
 * three compose data nodes on one volume are recognised as one disk.
 */
import { readFileSync, statSync } from 'node:fs'
import { hostname } from 'node:os'

export function filesystemId(dir: string): string {
  let machine: string
  try {
    machine = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    machine = hostname()
  }
  return `${machine}:${statSync(dir).dev}`
}
