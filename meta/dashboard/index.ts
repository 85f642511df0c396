/**
 * meta's live dashboard: the sampler that keeps the last minutes of requests,
 * the state reader and the HTTP listener (docs/operations.md#dashboard).
 * meta/main.ts makes the sampler (its observe goes beside the Prometheus one)
 * and starts the listener; nothing else in meta knows the dashboard exists.
 */
import type { Logger } from '../../common/log'
import type { MetaConfig } from '../config'
import type { MetaEnv } from '../context'
import { OpsSampler } from './sampler'
import { serveDashboard, type DashboardServer } from './server'
import { DashboardStateReader, type DashboardSource } from './state'

export { OpsSampler } from './sampler'
export type { DashboardServer } from './server'

type Observe = (op: string, seconds: number, code: string | null) => void

/** `observe` that also feeds the sampler (when there is one). */
export function withSampler(observe: Observe, sampler: OpsSampler | null): Observe {
  if (!sampler) return observe
  return (op, seconds, code) => {
    observe(op, seconds, code)
    sampler.observe(op, seconds, code)
  }
}

export function dashboardSampler(cfg: MetaConfig, env: MetaEnv): OpsSampler | null {
  if (!cfg.ui) return null
  const sampler = new OpsSampler(() => ({ copyRate: env.repairMeter?.rate() ?? 0 }))
  sampler.start()
  return sampler
}

export async function startDashboard(
  ui: NonNullable<MetaConfig['ui']>,
  src: DashboardSource,
  log: Logger,
): Promise<DashboardServer> {
  const reader = new DashboardStateReader(src)
  const server = await serveDashboard({ listen: ui.listen, token: ui.token, reader, log })
  const closeServer = server.close
  return {
    ...server,
    close: async () => {
      src.sampler.stop()
      await closeServer()
    },
  }
}
