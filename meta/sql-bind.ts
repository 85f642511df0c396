import type { Params } from './sqlite'

/**
 * better-sqlite3 binds every JS number as REAL, where the sqlite3 package bound
 * whole numbers as INTEGER; in SQL that differs (`'n' || ?` gives 'n4.0',
 * `? / 2` keeps the fraction, typeof() says real). Whole numbers go as BigInt,
 * which it binds as INTEGER. Captured writes keep the caller's values.
 */
export function bindable(params: Params): Params {
  let out: Params | undefined
  for (let i = 0; i < params.length; i++) {
    const p = params[i]
    if (typeof p === 'number' && Number.isSafeInteger(p)) {
      out ??= params.slice()
      out[i] = BigInt(p)
    }
  }
  return out ?? params
}
