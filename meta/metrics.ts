/** Prometheus metrics of the metadata service, on a private registry. */
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { collectProcessMetrics, derivedCounter } from '../common/prom'
import { census } from './census'
import type { MetaEnv } from './context'
import type { LifecycleStats } from './lifecycle-stats'

export interface MetaMetrics {
  registry: Registry
  /** One answered request: its op, how long it took, and its error code (null on success). */
  observe(op: string, seconds: number, code: string | null): void
}

export function createMetaMetrics(env: MetaEnv, lifecycle?: LifecycleStats): MetaMetrics {
  const registry = new Registry()
  collectProcessMetrics(registry, 'berth_meta_')
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
  new Gauge({
    name: 'berth_meta_blocks_under_replicated',
    help: 'Referenced blocks with fewer live replicas than min(R, live nodes): repair can fix these now',
    registers,
    async collect() {
      this.set((await census(env)).underReplicated)
    },
  })
  new Gauge({
    name: 'berth_meta_blocks_below_r',
    help: 'Referenced blocks with fewer live replicas than R (also counts what too few live nodes cannot hold)',
    registers,
    async collect() {
      this.set((await census(env)).belowR)
    },
  })
  if (lifecycle) {
    const counters: Array<[keyof LifecycleStats, string]> = [
      ['gcBlocks', 'Blocks collected by GC (rows removed, copies deleted conditionally)'],
      ['rowsRemoved', 'Replica rows removed because the node did not hold the copy'],
      ['rowsAdded', 'Replica rows added for copies of referenced blocks meta did not list'],
      ['orphansDeleted', 'Orphan copies (blocks meta does not know) moved to trash'],
      ['orphansKept', 'Orphan copies a node kept because they were PUT after the decision'],
      ['trimmed', 'Copies beyond R removed'],
      ['repaired', 'Copies made by repair'],
      ['corrupt', 'Copies reported bad that their node re-hashed, found corrupt and moved to trash'],
      ['reconcilePasses', 'Complete reconciliation passes over one node inventory'],
    ]
    for (const [key, help] of counters) {
      const name = `berth_meta_${key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}_total`
      derivedCounter(registers, name, help, () => lifecycle[key])
    }
  }
  return {
    registry,
    observe(op, seconds, code) {
      ops.inc({ op, result: code ?? 'ok' })
      latency.observe({ op }, seconds)
    },
  }
}
