/**
 * A real FUSE mount of a test cluster: `berth mount --foreground` on a unique
 * temp mountpoint, ready once the root answers; teardown stops the client and
 * always `fusermount -uz`s, also when the test failed or the client was killed.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { spawnService, type ServiceHandle } from '../../cli/spawn-service'
import type { TestCluster } from './cluster'

export interface TestMount {
  dir: string
  client: ServiceHandle
  /** Stops the client gracefully (flush + unmount). */
  unmount(): Promise<void>
  /** Mounts again on the same dir (after unmount or kill -9). */
  remount(): Promise<TestMount>
}

export function fusermountUz(dir: string): void {
  spawnSync('fusermount', ['-uz', dir], { stdio: 'ignore' })
}

export async function mountCluster(t: Test, c: TestCluster, opts: { args?: string[]; dir?: string; natsUrl?: string } = {}): Promise<TestMount> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'berth-mnt-'))
  const fresh = opts.dir === undefined
  t.teardown(() => {
    fusermountUz(dir)
    if (fresh) {
      try {
        rmdirSync(dir)
      } catch {
        // still busy or not empty: leave it
      }
    }
  })
  const client = await spawnService(['mount', opts.natsUrl ?? c.nats.url, dir, '--foreground', '--cluster', c.cluster, ...(opts.args ?? [])], {
    env: c.env('client'),
    readyTimeoutMs: 30_000,
  })
  t.teardown(() => client.stop())
  const m: TestMount = {
    dir,
    client,
    unmount: () => client.stop(),
    remount: () => mountCluster(t, c, { ...opts, dir }),
  }
  return m
}
