/**
 * The check behind `berth fsck`: walk the namespace through meta (readdir and
 * chunk maps, as any client sees them), then ask every node that meta lists as
 * a replica of a block for that block. A replica is good when the node has it
 * and (unless `quick`) its bytes hash to the block's name; a block with no good
 * replica is lost, one with fewer than the wanted replicas is degraded.
 */
import { blockName, namesBlock } from '../common/block-hash'
import type { MetaClient } from '../common/meta-client'
import { S_IFDIR, S_IFMT, S_IFREG } from '../common/modes'
import { MAX_PAGE, ROOT_INO, type NodeInfo } from '../common/protocol'
import { extentsOf } from '../common/chunk-extents'


export type ReplicaState = 'ok' | 'missing' | 'corrupt' | 'short' | 'unreachable'

export interface ReplicaProblem {
  hash: string
  node: string
  url: string | null
  state: Exclude<ReplicaState, 'ok'>
  detail: string
  /** Up to a few paths that use the block. */
  files: string[]
}

export interface FsckReport {
  ok: boolean
  quick: boolean
  files: number
  /** Directories, the root included (the text report prints this same number). */
  dirs: number
  chunks: number
  blocks: number
  replicasChecked: number
  replicasGood: number
  /** Blocks with no good replica: their files cannot be read. */
  lost: string[]
  /** Blocks with at least one but fewer than `replicas` good replicas. */
  degraded: string[]
  problems: ReplicaProblem[]
  replicas: number
  /** Copies of blocks meta does not know (at most MAX_LISTED; `orphanCount`/`orphanBytes` count all). */
  orphans: Array<{ node: string; hash: string; size: number; age: number }>
  orphanCount: number
  orphanBytes: number
  /**
   * Replica rows that do not match a node: `no-copy` (meta lists the node, the
   * node lacks the block) or `no-row` (the node holds a referenced block meta
   * does not list there).
   */
  wrongRows: Array<{ hash: string; node: string; kind: 'no-copy' | 'no-row' }>
}

const MAX_LISTED = 1000

export interface FsckProgress {
  files: number
  blocks: number
  checked: number
  phase: 'scan' | 'check'
}

interface BlockUse {
  /** Longest valid length any chunk claims: the block must have at least this many bytes. */
  len: number
  nodes: Set<string>
  files: string[]
}

const MAX_PATHS_PER_BLOCK = 3

async function* walk(meta: MetaClient): AsyncGenerator<{ path: string; ino: number; mode: number }> {
  const dirs: Array<{ ino: number; path: string }> = [{ ino: ROOT_INO, path: '' }]
  const seenDirs = new Set<number>([ROOT_INO])
  while (dirs.length > 0) {
    const dir = dirs.shift()!
    let cursor: string | null = null
    do {
      const page: Awaited<ReturnType<typeof meta.call<'readdir'>>> = await meta.call('readdir', { ino: dir.ino, cursor, limit: MAX_PAGE })
      for (const e of page.entries) {
        const path = `${dir.path}/${e.name}`
        if ((e.attr.mode & S_IFMT) === S_IFDIR) {
          if (!seenDirs.has(e.attr.ino)) {
            seenDirs.add(e.attr.ino)
            dirs.push({ ino: e.attr.ino, path })
          }
        }
        yield { path, ino: e.attr.ino, mode: e.attr.mode }
      }
      cursor = page.next
    } while (cursor !== null)
  }
}

/** Checks one replica over the node's block API. */
async function checkReplica(url: string, token: string, hash: string, minLen: number, quick: boolean, timeoutMs: number): Promise<{ state: ReplicaState; detail: string }> {
  let res: Response
  try {
    res = await fetch(`${url}/v1/blocks/${hash}`, {
      method: quick ? 'HEAD' : 'GET',
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(timeoutMs),
    })
  } catch (err) {
    return { state: 'unreachable', detail: (err as Error).message }
  }
  if (res.status === 404) {
    await res.body?.cancel()
    return { state: 'missing', detail: 'node does not have the block' }
  }
  if (res.status !== 200) {
    await res.body?.cancel()
    return { state: 'unreachable', detail: `HTTP ${res.status}` }
  }
  const declared = Number(res.headers.get('content-length') ?? NaN)
  if (quick) return declared >= minLen ? { state: 'ok', detail: '' } : { state: 'short', detail: `${declared} bytes, chunks use ${minLen}` }
  const parts: Uint8Array[] = []
  let size = 0
  try {
    if (res.body) {
      for await (const part of res.body) {
        parts.push(part)
        size += part.length
      }
    }
  } catch (err) {
    return { state: 'unreachable', detail: `read failed: ${(err as Error).message}` }
  }
  const bytes = Buffer.concat(parts)
  if (!namesBlock(hash, bytes)) return { state: 'corrupt', detail: `content hashes to neither BLAKE3 nor SHA-256 ${hash} (BLAKE3 ${blockName(bytes, 'blake3')})` }
  if (size < minLen) return { state: 'short', detail: `${size} bytes, chunks use ${minLen}` }
  return { state: 'ok', detail: '' }
}

export interface FsckOptions {
  quick: boolean
  concurrency: number
  timeoutMs: number
  onProgress?: (p: FsckProgress) => void
}

export async function fsck(meta: MetaClient, opts: FsckOptions): Promise<FsckReport> {
  const hello = await meta.call('hello', {})
  const nodes = new Map<string, NodeInfo>(hello.nodes.map((n) => [n.id, n]))
  const blocks = new Map<string, BlockUse>()
  const seenFiles = new Set<number>()
  const progress: FsckProgress = { files: 0, blocks: 0, checked: 0, phase: 'scan' }
  let dirs = 0
  let chunkCount = 0

  for await (const e of walk(meta)) {
    if ((e.mode & S_IFMT) === S_IFDIR) dirs++
    if ((e.mode & S_IFMT) !== S_IFREG || seenFiles.has(e.ino)) continue
    seenFiles.add(e.ino)
    progress.files++
    let from = 0
    for (;;) {
      const page = await meta.call('chunks', { ino: e.ino, from, limit: MAX_PAGE })
      for (const c of page.chunks) {
        from = Math.max(from, c.idx + 1)
        if (c.hash === null) continue
        chunkCount++
        // a chunk's base block and every appended slice block are checked alike
        for (const { ref } of extentsOf(c)) {
          let use = blocks.get(ref.hash!)
          if (!use) {
            use = { len: 0, nodes: new Set(), files: [] }
            blocks.set(ref.hash!, use)
          }
          use.len = Math.max(use.len, ref.len)
          for (const n of ref.nodes) use.nodes.add(n)
          if (use.files.length < MAX_PATHS_PER_BLOCK && !use.files.includes(e.path)) use.files.push(e.path)
        }
      }
      if (!page.more || page.chunks.length === 0) break
    }
    progress.blocks = blocks.size
    opts.onProgress?.(progress)
  }

  progress.phase = 'check'
  const jobs: Array<{ hash: string; node: string }> = []
  for (const [hash, use] of blocks) for (const node of use.nodes) jobs.push({ hash, node })
  const good = new Map<string, number>()
  const problems: ReplicaProblem[] = []
  let next = 0
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++]!
      const use = blocks.get(job.hash)!
      const info = nodes.get(job.node)
      const r = info
        ? await checkReplica(info.url, hello.token, job.hash, use.len, opts.quick, opts.timeoutMs)
        : { state: 'unreachable' as const, detail: 'node unknown to meta (no heartbeat since meta started)' }
      if (r.state === 'ok') good.set(job.hash, (good.get(job.hash) ?? 0) + 1)
      else problems.push({ hash: job.hash, node: job.node, url: info?.url ?? null, state: r.state, detail: r.detail, files: use.files })
      progress.checked++
      opts.onProgress?.(progress)
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency) }, worker))

  const lost: string[] = []
  const degraded: string[] = []
  const wanted = Math.max(1, Math.min(hello.replicas, [...nodes.values()].filter((n) => n.alive).length))
  for (const hash of blocks.keys()) {
    const n = good.get(hash) ?? 0
    if (n === 0) lost.push(hash)
    else if (n < wanted) degraded.push(hash)
  }
  problems.sort((a, b) => a.hash.localeCompare(b.hash) || a.node.localeCompare(b.node))

  const wrongRows: FsckReport['wrongRows'] = problems.filter((p) => p.state === 'missing').map((p) => ({ hash: p.hash, node: p.node, kind: 'no-copy' as const }))
  const orphans: FsckReport['orphans'] = []
  let orphanCount = 0
  let orphanBytes = 0
  for (const node of [...nodes.values()].filter((n) => n.alive)) {
    let after = ''
    for (;;) {
      const page = await meta.call('inventory', { node: node.id, after, limit: MAX_PAGE })
      for (const e of page.entries) {
        if (e.state === 'orphan') {
          orphanCount++
          orphanBytes += e.size
          if (orphans.length < MAX_LISTED) orphans.push({ node: node.id, hash: e.hash, size: e.size, age: e.age })
        } else if (e.state === 'unlisted' && wrongRows.length < MAX_LISTED) {
          wrongRows.push({ hash: e.hash, node: node.id, kind: 'no-row' })
        }
      }
      const last = page.entries[page.entries.length - 1]
      if (!page.more || !last) break
      after = last.hash
    }
  }
  return {
    ok: problems.length === 0 && lost.length === 0 && degraded.length === 0 && wrongRows.length === 0,
    orphans,
    orphanCount,
    orphanBytes,
    wrongRows,
    quick: opts.quick,
    files: progress.files,
    dirs: dirs + 1, // the walk yields what is below the root
    chunks: chunkCount,
    blocks: blocks.size,
    replicasChecked: jobs.length,
    replicasGood: [...good.values()].reduce((a, b) => a + b, 0),
    lost: lost.sort(),
    degraded: degraded.sort(),
    problems,
    replicas: hello.replicas,
  }
}
