/**
 * Prometheus metrics of one data node, on a private registry (tests run several
 * nodes' code in one process only by accident; a global registry would mix them).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { collectProcessMetrics } from '../common/prom'

export interface NodeMetrics {
  registry: Registry
  requests: Counter<'route' | 'method' | 'status'>
  bytesIn: Counter
  bytesOut: Counter
  latency: Histogram<'route' | 'method'>
  scrubbed: Counter
  corrupt: Counter
  /** Times the disk was found hung (node/disk-canary.ts). */
  diskStalls: Counter
}

export function createMetrics(usage: () => { blocks: number; bytes: number; trashBytes?: number; directIo?: boolean }, diskStalled: () => boolean = () => false): NodeMetrics {
  const registry = new Registry()
  collectProcessMetrics(registry, 'berth_node_')
  const registers = [registry]
  new Gauge({
    name: 'berth_node_blocks_stored',
    help: 'Blocks held by this node',
    registers,
    collect() {
      this.set(usage().blocks)
    },
  })
  new Gauge({
    name: 'berth_node_bytes_stored',
    help: 'Bytes of blocks held by this node',
    registers,
    collect() {
      this.set(usage().bytes)
    },
  })
  new Gauge({
    name: 'berth_node_trash_bytes',
    help: 'Bytes of deleted copies kept in DIR/trash until --trash-hours pass',
    registers,
    collect() {
      this.set(usage().trashBytes ?? 0)
    },
  })
  new Gauge({
    name: 'berth_node_direct_io',
    help: '1 while block files are written with O_DIRECT (the file system takes it and BERTH_DIRECT_IO is not 0), 0 through the page cache',
    registers,
    collect() {
      this.set(usage().directIo ? 1 : 0)
    },
  })
  new Gauge({
    name: 'berth_node_disk_stalled',
    help: '1 while the disk hangs (a canary write+fsync unfinished past --disk-stall-ms): the node is out of the cluster',
    registers,
    collect() {
      this.set(diskStalled() ? 1 : 0)
    },
  })
  return {
    registry,
    requests: new Counter({ name: 'berth_node_http_requests_total', help: 'HTTP requests by route, method and status', labelNames: ['route', 'method', 'status'], registers }),
    bytesIn: new Counter({ name: 'berth_node_http_bytes_in_total', help: 'Block bytes received over HTTP', registers }),
    bytesOut: new Counter({ name: 'berth_node_http_bytes_out_total', help: 'Block bytes sent over HTTP', registers }),
    latency: new Histogram({
      name: 'berth_node_http_request_seconds',
      help: 'HTTP request latency',
      labelNames: ['route', 'method'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    scrubbed: new Counter({ name: 'berth_node_scrub_blocks_total', help: 'Blocks re-hashed by scrub', registers }),
    corrupt: new Counter({ name: 'berth_node_scrub_corrupt_total', help: 'Corrupt blocks found and dropped by scrub', registers }),
    diskStalls: new Counter({ name: 'berth_node_disk_stalls_total', help: 'Times the disk was found hung and the node left the cluster', registers }),
  }
}
