/**
 * Operator requests of `berth gc`: the backlog of block GC (read-only) and a
 * pass run now. Both go through meta's own GC and reconciliation code
 * (meta/block-gc.ts, meta/reconcile.ts via meta/maintenance.ts).
 */
import { fsError } from '../common/errors'
import type { MetaReplies } from '../common/protocol'
import { gcBacklog } from './block-gc'
import type { MetaEnv } from './context'

function control(env: MetaEnv): NonNullable<MetaEnv['maintenance']> {
  if (!env.maintenance) throw fsError('ENOSYS', 'this meta runs no background GC')
  return env.maintenance
}

export function gcPlan(env: MetaEnv): Promise<MetaReplies['gcPlan']> {
  const m = control(env)
  return gcBacklog(env, m.graceMs, m.orphanAgeMs)
}

export function gcRun(env: MetaEnv): Promise<MetaReplies['gcRun']> {
  return control(env).runNow()
}
