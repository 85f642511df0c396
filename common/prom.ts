/**
 * Shared Prometheus helpers (meta, node and client registries).
 *
 * derivedCounter: a Prometheus counter whose value lives elsewhere (a plain number a component
 * keeps counting): read at scrape time instead of incremented in step, so the
 * component needs no dependency on prom-client.
 */
import { collectDefaultMetrics, Counter, type Registry } from 'prom-client'

export function derivedCounter(registers: Registry[], name: string, help: string, get: () => number): Counter {
  return new Counter({
    name,
    help,
    registers,
    collect() {
      this.reset()
      this.inc(get())
    },
  })
}

/**
 * Node.js process metrics (CPU, memory, GC, event loop lag) under `prefix`.
 * prom-client samples event loop lag with a 10 ms timer by default: 100 wakeups
 * a second in every idle daemon, measured as most of an idle meta's CPU. At
 * 100 ms a lag spike is still seen (the timer fires late by it), at a tenth
 * of the cost.
 */
export function collectProcessMetrics(registry: Registry, prefix: string): void {
  collectDefaultMetrics({ register: registry, prefix, eventLoopMonitoringPrecision: 100 })
}
