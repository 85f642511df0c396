/** Command-line values shared by every berth command. */
import { BerthError } from './errors'

/**
 * An integer flag: `fallback` when absent, else an integer in min..max.
 * Anything else is EINVAL naming the flag (`--name`, or `-o name=` for mount
 * options, as the caller spells it).
 */
export function intFlag(name: string, value: string | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (value.trim() === '' || !Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in ${min}..${max}`
    throw new BerthError('EINVAL', `${name} must be an integer ${range}, got "${value}"`)
  }
  return n
}
