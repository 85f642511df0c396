/**
 * Helpers for block lifecycle tests: the client's pinned upload path without a
 * mount (PinnedBlocks over a real BlockClient and MetaClient), copies counted
 * on the nodes' disks, and polling with a deadline.
 */
import { randomBytes } from 'node:crypto'
import { closeSync, existsSync, fsyncSync, openSync, readdirSync, statSync, unlinkSync, writeSync, type Dirent } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import { PinnedBlocks } from '../../client/pinned-blocks'
import { BlockClient } from '../../common/block-client'
import type { MetaClient } from '../../common/meta-client'
import type { TestCluster } from './cluster'

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export async function blockClient(t: Test, c: TestCluster, nodes: number): Promise<BlockClient> {
  const bc = new BlockClient(await c.connect('client'), { cluster: c.cluster, token: c.secret, replicas: 2, deadlineMs: 15_000 })
  t.teardown(() => bc.close())
  await bc.start()
  for (let i = 0; i < 100 && bc.liveNodes().size < nodes; i++) await sleep(100)
  return bc
}

export function pinned(bc: BlockClient, meta: MetaClient, session: string): PinnedBlocks {
  return new PinnedBlocks(bc, meta, session)
}

/** Node folders of the cluster (node0, node1, ...), by index. */
export function nodeDirs(c: TestCluster): string[] {
  return readdirSync(c.dir)
    .filter((d) => /^node\d+$/.test(d))
    .sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)))
    .map((d) => join(c.dir, d))
}

export function blockPath(nodeDir: string, hash: string): string {
  return join(nodeDir, 'blocks', hash.slice(0, 2), hash.slice(2, 4), hash)
}

/** Node folders that hold a copy of `hash`. */
export function holders(c: TestCluster, hash: string): string[] {
  return nodeDirs(c).filter((d) => existsSync(blockPath(d, hash)))
}

/** Bytes of every block file (and, separately, trash) under a node folder. */
export function diskBytes(nodeDir: string): { blocks: number; trash: number } {
  // the node moves and purges files while we walk: a file or folder gone between
  // the listing and the stat counts as gone (ENOENT), not as a failure
  const walk = (dir: string): number => {
    let n = 0
    let entries: Dirent[]
    try {
      entries = readdirSync(dir, { withFileTypes: true })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0
      throw err
    }
    for (const e of entries) {
      const p = join(dir, e.name)
      if (e.isDirectory()) {
        n += walk(p)
        continue
      }
      n += statSync(p, { throwIfNoEntry: false })?.size ?? 0
    }
    return n
  }
  return { blocks: walk(join(nodeDir, 'blocks')), trash: walk(join(nodeDir, 'trash')) }
}

/**
 * `p`'s outcome, or `late` if it has not settled within `ms` (a rejection of
 * `p` rejects). The timer is cleared once either comes: a pending timer keeps
 * the file's process, and its tap job slot, alive until it fires (a 30 s one
 * left behind after a file's last test kept it 25 s).
 */
export async function within<T, U>(p: Promise<T>, ms: number, late: U): Promise<T | U> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<U>((r) => (timer = setTimeout(() => r(late), ms)))])
  } finally {
    clearTimeout(timer)
  }
}

/** Polls `check` until it returns true or `ms` pass; returns whether it did. */
export async function eventually(check: () => boolean | Promise<boolean>, ms: number, everyMs = 200): Promise<boolean> {
  const end = Date.now() + ms
  for (;;) {
    if (await check()) return true
    if (Date.now() > end) return false
    await sleep(everyMs)
  }
}

/**
 * A child's stderr once it matches `re`, or as it is after `ms`. A line the
 * child wrote before answering a call can reach this process after the call
 * returns (it comes over another pipe), so test for it through this.
 */
export async function stderrWhen(proc: { stderr(): string }, re: RegExp, ms = 3000): Promise<string> {
  await eventually(() => re.test(proc.stderr()), ms, 20)
  return proc.stderr()
}

/** fsync'd sequential write rate of the disk under `dir`, MB/s (10^6 bytes): the yardstick repair and rebalance rates are reported beside. */
export function diskWriteMBps(dir: string, bytes: number): number {
  const file = join(dir, 'disk-probe')
  const buf = randomBytes(4 * 1024 * 1024)
  const t0 = process.hrtime.bigint()
  const fd = openSync(file, 'w')
  for (let done = 0; done < bytes; done += buf.length) writeSync(fd, buf)
  fsyncSync(fd)
  closeSync(fd)
  const s = Number(process.hrtime.bigint() - t0) / 1e9
  unlinkSync(file)
  return bytes / 1e6 / s
}
