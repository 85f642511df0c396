/**
 * A Prometheus counter whose value lives elsewhere (a plain number a component
 * keeps counting): read at scrape time instead of incremented in step, so the
 * component needs no dependency on prom-client.
 */
import { Counter, type Registry } from 'prom-client'

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
