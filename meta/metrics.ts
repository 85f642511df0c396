/** Prometheus metrics of the metadata service, on a private registry. */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { MetaEnv } from './context'

export interface MetaMetrics {
  registry: Registry
  /** One answered request: its op, how long it took, and its error code (null on success). */
  observe(op: string, seconds: number, code: string | null): void
}

export function createMetaMetrics(env: Pick<MetaEnv, 'nodes'>): MetaMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'berth_meta_' })
  const registers = [registry]
  const ops = new Counter({ name: 'berth_meta_ops_total', help: 'Metadata requests answered, by op and result (ok or errno name)', labelNames: ['op', 'result'], registers })
  const latency = new Histogram({
    name: 'berth_meta_op_seconds',
    help: 'Time from receiving a metadata request to answering it',
    labelNames: ['op'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  })
  new Gauge({
    name: 'berth_meta_live_nodes',
    help: 'Data nodes heard from within the dead-node timeout',
    registers,
    collect() {
      this.set(env.nodes.live().length)
    },
  })
  return {
    registry,
    observe(op, seconds, code) {
      ops.inc({ op, result: code ?? 'ok' })
      latency.observe({ op }, seconds)
    },
  }
}
