/**
 * Prometheus metrics of a mount: FUSE ops by result with latency, bytes read
 * and written through the mount, and the block cache's hits, misses and size.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { collectProcessMetrics, derivedCounter } from '../common/prom'
import { observeOps } from './fuse-adapter'
import type { BlockCache } from './block-cache'
import type { RangeCopier } from './copy-range'
import type { ClosedFiles } from './closed-files'

export function createClientMetrics(cache: BlockCache, copier?: RangeCopier, closed?: ClosedFiles): Registry {
  const registry = new Registry()
  collectProcessMetrics(registry, 'berth_client_')
  const registers = [registry]
  const ops = new Counter({ name: 'berth_client_fuse_ops_total', help: 'FUSE operations, by op and result (ok or error)', labelNames: ['op', 'result'], registers })
  const latency = new Histogram({
    name: 'berth_client_fuse_op_seconds',
    help: 'FUSE operation latency as the client handles it',
    labelNames: ['op'],
    buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers,
  })
  const bytes = new Counter({ name: 'berth_client_bytes_total', help: 'Bytes read and written through the mount', labelNames: ['direction'], registers })
  const counter = (name: string, help: string, get: () => number) => derivedCounter(registers, name, help, get)
  counter('berth_client_block_cache_hits_total', 'Block reads answered from the cache', () => cache.hits)
  counter('berth_client_block_cache_misses_total', 'Block reads that fetched from a data node', () => cache.misses)
  if (closed) {
    counter('berth_client_reopen_cache_hits_total', 'Read-only opens answered from the map kept at the last close, without a meta request', () => closed.hits)
    counter('berth_client_reopen_cache_misses_total', 'Read-only opens that found a kept map but asked meta (the file changed, or the barrier could not vouch)', () => closed.misses)
  }
  if (copier) {
    // copy_file_range: what was shared by meta, what had to be read and written
    counter('berth_client_copy_cloned_chunks_total', 'Chunks copy_file_range cloned in meta (blocks shared, no bytes moved)', () => copier.clonedChunks)
    counter('berth_client_copy_copied_bytes_total', 'Bytes copy_file_range read and wrote through the client (not chunk-aligned, or not clonable)', () => copier.copiedBytes)
  }
  new Gauge({
    name: 'berth_client_block_cache_bytes',
    help: 'Bytes held in the block cache',
    registers,
    collect() {
      this.set(cache.bytes)
    },
  })
  observeOps((name, seconds, errno, value) => {
    ops.inc({ op: name, result: errno === 0 ? 'ok' : 'error' })
    latency.observe({ op: name }, seconds)
    if (errno === 0 && typeof value === 'number' && (name === 'read' || name === 'write')) bytes.inc({ direction: name }, value)
  })
  return registry
}
