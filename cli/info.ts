/**
 * `berth info PATH...`: how meta stores a file: inode and attributes, its
 * chunk map, each chunk's block and the replicas of that block with where
 * they live (node id, URL, zone, alive). Only existing read-only operations
 * (lookup, getattr, chunks, hello), as any client sees them.
 */
import { lstatSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { BerthError, codeOf } from '../common/errors'
import type { MetaClient } from '../common/meta-client'
import { isDir, isLnk, isReg, PERM_BITS, S_IFBLK, S_IFCHR, S_IFIFO, S_IFMT, S_IFSOCK } from '../common/modes'
import { MAX_PAGE, ROOT_INO, type Attr, type NodeInfo } from '../common/protocol'
import { chunkLen, extentsOf } from '../common/chunk-extents'
import { berthMountOf } from './berth-mounts'
import { CONNECTION_HELP, CONNECTION_OPTIONS, connectClient } from './client-connection'
import { bytes } from './status'

const HELP = `usage: berth info PATH... [--from-root] [--json] [connection options]
For each PATH on a berth mount: inode, type, mode, size, its chunks, each
chunk's block (hash, length) and the replicas of that block (node id, URL,
zone, alive). Small files whose bytes live in meta say "inline".
  --from-root          PATHs are paths in the cluster's namespace (/ = its root), no mount needed
  --json               a JSON array, one object per PATH
${CONNECTION_HELP}

Exit status: 0 when every PATH was found, 1 otherwise (nothing printed), 2 on bad usage.
`

export interface ReplicaInfo {
  node: string
  url: string | null
  zone: string | null
  /** false when meta has no live heartbeat of the node (or does not know it). */
  alive: boolean
}

export interface SliceInfo {
  /** Where the slice starts in the chunk. */
  pos: number
  len: number
  hash: string
  replicas: ReplicaInfo[]
}

export interface ChunkInfo {
  idx: number
  /** Valid bytes of the chunk (its base block and its slices). */
  len: number
  /** The base block's SHA-256, null for inline chunks and holes. */
  hash: string | null
  /** Bytes of the base block the chunk uses. */
  baseLen: number
  inline: boolean
  replicas: ReplicaInfo[]
  /** Appended slices after the base block (docs/data-node.md#appends-slices-and-compaction); empty once compacted. */
  slices: SliceInfo[]
}

export interface FileInfo {
  path: string
  ino: number
  type: 'file' | 'directory' | 'symlink' | 'fifo' | 'socket' | 'char-device' | 'block-device'
  /** Permission bits, octal. */
  mode: string
  nlink: number
  uid: number
  gid: number
  size: number
  mtime: string
  /** Symlink target. */
  target?: string
  /** Every chunk's bytes are kept in meta (files up to 64 KiB). */
  inline: boolean
  chunks: ChunkInfo[]
  /** Distinct blocks the file uses. */
  blocks: number
}

function typeOf(mode: number): FileInfo['type'] {
  if (isReg(mode)) return 'file'
  if (isDir(mode)) return 'directory'
  if (isLnk(mode)) return 'symlink'
  switch (mode & S_IFMT) {
    case S_IFIFO: return 'fifo'
    case S_IFSOCK: return 'socket'
    case S_IFCHR: return 'char-device'
    case S_IFBLK: return 'block-device'
    default: return 'file'
  }
}

/** The attributes of a namespace path, by lookups from the root. */
export async function resolvePath(meta: MetaClient, path: string): Promise<Attr> {
  let attr = (await meta.call('getattr', { ino: ROOT_INO })).attr
  for (const name of path.split('/').filter(Boolean)) {
    if (!isDir(attr.mode)) throw new BerthError('ENOTDIR', `${path}: ${name} is below a non-directory`)
    try {
      attr = (await meta.call('lookup', { parent: attr.ino, name })).attr
    } catch (err) {
      if (codeOf(err) === 'ENOENT') throw new BerthError('ENOENT', `${path}: no such file in the cluster`)
      throw err
    }
  }
  return attr
}

export async function describe(meta: MetaClient, path: string, attr: Attr, nodes: Map<string, NodeInfo>): Promise<FileInfo> {
  const chunks: ChunkInfo[] = []
  if (isReg(attr.mode)) {
    let from = 0
    for (;;) {
      const page = await meta.call('chunks', { ino: attr.ino, from, limit: MAX_PAGE })
      const where = (ids: string[]): ReplicaInfo[] =>
        ids.map((id) => {
          const n = nodes.get(id)
          return { node: id, url: n?.url ?? null, zone: n?.zone ?? null, alive: n?.alive ?? false }
        })
      for (const c of page.chunks) {
        from = Math.max(from, c.idx + 1)
        chunks.push({
          idx: c.idx,
          len: chunkLen(c),
          hash: c.hash,
          baseLen: c.len,
          inline: c.hash === null && c.data !== undefined,
          replicas: where(c.nodes),
          slices: extentsOf(c)
            .slice(1)
            .map((e) => ({ pos: e.pos, len: e.ref.len, hash: e.ref.hash!, replicas: where(e.ref.nodes) })),
        })
      }
      if (!page.more || page.chunks.length === 0) break
    }
  }
  const info: FileInfo = {
    path,
    ino: attr.ino,
    type: typeOf(attr.mode),
    mode: (attr.mode & PERM_BITS).toString(8).padStart(4, '0'),
    nlink: attr.nlink,
    uid: attr.uid,
    gid: attr.gid,
    size: attr.size,
    mtime: new Date(attr.mtime[0] * 1000 + Math.floor(attr.mtime[1] / 1e6)).toISOString(),
    inline: chunks.length > 0 && chunks.every((c) => c.inline),
    chunks,
    blocks: new Set(chunks.flatMap((c) => (c.hash ? [c.hash, ...c.slices.map((s) => s.hash)] : []))).size,
  }
  if (isLnk(attr.mode)) info.target = (await meta.call('readlink', { ino: attr.ino })).target
  return info
}

/** Slices printed per chunk in the text form. */
const SLICES_LISTED = 8

export function formatInfo(f: FileInfo): string {
  const lines = [
    f.path,
    `  inode ${f.ino}  ${f.type}  mode ${f.mode}  uid ${f.uid}  gid ${f.gid}  nlink ${f.nlink}  size ${f.size} (${bytes(f.size)})  mtime ${f.mtime}`,
  ]
  if (f.target !== undefined) lines.push(`  -> ${f.target}`)
  if (f.type === 'file') {
    if (f.inline) lines.push(`  inline: its ${f.size} bytes are kept in meta, no blocks`)
    else if (f.chunks.length === 0) lines.push('  no chunks (empty or all holes)')
    else lines.push(`  ${f.chunks.length} chunk(s), ${f.blocks} block(s)`)
    if (!f.inline) {
      for (const c of f.chunks) {
        if (c.inline) lines.push(`  chunk ${c.idx}: inline, ${c.len} bytes`)
        else if (!c.hash) lines.push(`  chunk ${c.idx}: hole`)
        else {
          const where = c.replicas.map((r) => `${r.node} (${r.url ?? 'no URL known'}${r.zone ? `, zone ${r.zone}` : ''}, ${r.alive ? 'alive' : 'DEAD'})`)
          lines.push(`  chunk ${c.idx}: block ${c.hash} ${c.baseLen} bytes, ${c.replicas.length} replica(s): ${where.join(', ') || 'NONE'}`)
          if (c.slices.length) lines.push(`    + ${c.slices.length} appended slice(s), ${c.len - c.baseLen} bytes (chunk ${c.len} bytes; compacted into one block when full)`)
          for (const s of c.slices.slice(0, SLICES_LISTED)) {
            const at = s.replicas.map((r) => `${r.node}${r.alive ? '' : ' DEAD'}`)
            lines.push(`    slice @${s.pos}: block ${s.hash} ${s.len} bytes, ${s.replicas.length} replica(s): ${at.join(', ') || 'NONE'}`)
          }
          if (c.slices.length > SLICES_LISTED) lines.push(`    ... ${c.slices.length - SLICES_LISTED} more slice(s) (--json lists every one)`)
        }
      }
    }
  }
  return lines.join('\n') + '\n'
}

export async function run(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...CONNECTION_OPTIONS,
      'from-root': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help || positionals.length === 0) {
    process.stdout.write(HELP)
    if (!values.help) process.exitCode = 2
    return
  }
  // local paths are mapped before connecting: a path off any mount is bad input
  const targets = positionals.map((p) => {
    if (values['from-root']) {
      if (!p.startsWith('/')) throw new BerthError('EINVAL', `${p}: with --from-root, paths start at the cluster's root (/...)`)
      return { arg: p, inCluster: p, local: null as string | null }
    }
    const m = berthMountOf(p)
    if (!m) throw new BerthError('EINVAL', `${p} is not on a berth mount (or use --from-root with a path in the cluster's namespace)`)
    return { arg: p, inCluster: m.inCluster, local: m.local }
  })
  const { nc, meta } = await connectClient(values, 'berth-info')
  try {
    const hello = await meta.call('hello', {})
    const nodes = new Map(hello.nodes.map((n) => [n.id, n]))
    const out: FileInfo[] = []
    for (const t of targets) {
      const attr = await resolvePath(meta, t.inCluster)
      if (t.local) checkSameFile(t.local, attr)
      out.push(await describe(meta, t.inCluster, attr, nodes))
    }
    process.stdout.write(values.json ? JSON.stringify(out, null, 2) + '\n' : out.map(formatInfo).join('\n'))
  } finally {
    await nc.close()
  }
}

/**
 * The mount reports meta's inode numbers (the low-level binding passes them through):
 * a different number means the mount belongs to another cluster than the one
 * the connection options reach.
 */
function checkSameFile(local: string, attr: Attr): void {
  let ino: number
  try {
    ino = lstatSync(local).ino
  } catch {
    return
  }
  if (ino !== attr.ino) {
    process.stderr.write(`berth info: warning: ${local} is inode ${ino} on its mount, but ${attr.ino} in the cluster reached (is the mount of another cluster? see --nats/--credentials)\n`)
  }
}
