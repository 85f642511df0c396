import { readFileSync } from 'node:fs'

/** Whether process `pid` exists and is not a zombie (a killed process nobody has reaped yet). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  // a killed daemon nobody has reaped yet is a zombie: signals succeed, but it is gone
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return true
  }
}
