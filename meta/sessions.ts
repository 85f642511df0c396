/**
 * Client sessions with epochs (docs/meta.md#sessions).
 *
 * A session is a lease a mount renews every third of its TTL. Each
 * registration gets a new epoch from a replicated counter; a renewal names the
 * epoch it holds and is refused with ESTALE when the session expired (its row
 * is gone, its open files were released) or was re-created meanwhile (an
 * implicit row from `open`, epoch 0). The client then restores its open files
 * with sessionRestore or fails their handles loudly; nothing is renewed
 * silently over a gap in which its files may have been freed.
 *
 *   (none) --session--> live(e) --session(e)--> live(e)
 *   live(e) --expiry (after grace)--> (none) --session(e)--> ESTALE
 *   any --sessionRestore--> live(e') with exactly the listed open files
 *
 * After a restart or a change of leader nothing expires before every session
 * had one full TTL to renew (graceSessions), as NFS servers grant after a reboot.
 */
import { fsError } from '../common/errors'
import type { MetaParsed, MetaReplies } from '../common/protocol'
import type { Changes, MetaEnv } from './context'
import { freeIfUnused } from './inodes'
import type { Conn } from './sqlite'
import { clockMs } from './time'

/** Lease given to a session that first shows up holding something (`open`, `pin`, `lock`) without a `session` call. */
export const DEFAULT_SESSION_TTL_MS = 60_000

/**
 * An implicit session row (epoch 0) for a session that holds something before
 * its lease was registered, so its expiry frees what it holds.
 */
export async function ensureSession(tx: Conn, session: string): Promise<void> {
  await tx.run('INSERT INTO sessions (id, host, expires) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING', [session, '', clockMs(tx) + DEFAULT_SESSION_TTL_MS])
}

/** Drops every lock of a session that ended, expired or was restored (meta/locks.ts); waiters on those inodes are told. */
export async function dropSessionLocks(tx: Conn, session: string, ch: Changes): Promise<void> {
  const inos = await tx.all<{ ino: number }>('SELECT DISTINCT ino FROM locks WHERE session = ?', [session])
  if (inos.length === 0) return
  await tx.run('DELETE FROM locks WHERE session = ?', [session])
  for (const r of inos) ch.lock(r.ino)
}

async function nextEpoch(tx: Conn): Promise<number> {
  await tx.run("INSERT INTO engine_state (key, value) VALUES ('epoch', 1) ON CONFLICT (key) DO UPDATE SET value = value + 1")
  const row = await tx.get<{ value: number }>("SELECT value FROM engine_state WHERE key = 'epoch'")
  return row!.value
}

export async function session(env: MetaEnv, b: MetaParsed<'session'>): Promise<MetaReplies['session']> {
  return env.db.write(async (tx) => {
    const row = await tx.get<{ epoch: number }>('SELECT epoch FROM sessions WHERE id = ?', [b.session])
    const expires = clockMs(tx) + b.ttlMs
    if (b.epoch !== undefined) {
      if (!row || row.epoch !== b.epoch) {
        throw fsError('ESTALE', `session ${b.session} epoch ${b.epoch} ${row ? `was replaced (now epoch ${row.epoch})` : 'expired'}: restore its open files`)
      }
      await tx.run('UPDATE sessions SET expires = ?, ttl_ms = ?, host = ? WHERE id = ?', [expires, b.ttlMs, b.host, b.session])
      return { epoch: row.epoch }
    }
    // registration: a row made implicitly by open/pin (epoch 0) is adopted
    const epoch = row && row.epoch > 0 ? row.epoch : await nextEpoch(tx)
    await tx.run(
      'INSERT INTO sessions (id, host, expires, epoch, ttl_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET host = excluded.host, expires = excluded.expires, epoch = excluded.epoch, ttl_ms = excluded.ttl_ms',
      [b.session, b.host, expires, epoch, b.ttlMs],
    )
    return { epoch }
  })
}

export async function sessionRestore(env: MetaEnv, b: MetaParsed<'sessionRestore'>, ch: Changes): Promise<MetaReplies['sessionRestore']> {
  return env.db.write(async (tx) => {
    const row = await tx.get<{ epoch: number }>('SELECT epoch FROM sessions WHERE id = ?', [b.session])
    // later pages of one restore keep the epoch the first page made
    const epoch = !b.first && row && row.epoch > 0 ? row.epoch : await nextEpoch(tx)
    await tx.run(
      'INSERT INTO sessions (id, host, expires, epoch, ttl_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET host = excluded.host, expires = excluded.expires, epoch = excluded.epoch, ttl_ms = excluded.ttl_ms',
      [b.session, b.host, clockMs(tx) + b.ttlMs, epoch, b.ttlMs],
    )
    const before = b.first ? await tx.all<{ ino: number }>('SELECT ino FROM open_files WHERE session = ?', [b.session]) : []
    if (b.first) await tx.run('DELETE FROM open_files WHERE session = ?', [b.session])
    // a lapsed session holds no locks: its mount forgets them too (client/locks.ts forgetAll)
    if (b.first) await dropSessionLocks(tx, b.session, ch)
    const lost: number[] = []
    for (const o of b.open) {
      const alive = await tx.get('SELECT 1 AS x FROM inodes WHERE ino = ?', [o.ino])
      if (!alive) {
        lost.push(o.ino)
        continue
      }
      await tx.run('INSERT INTO open_files (session, ino, count) VALUES (?, ?, ?) ON CONFLICT (session, ino) DO UPDATE SET count = count + excluded.count', [b.session, o.ino, o.count])
    }
    // registrations the client no longer holds: release them now
    for (const r of before) if (await freeIfUnused(tx, r.ino, clockMs(tx))) ch.ino(r.ino)
    return { epoch, lost }
  })
}

/**
 * Grace after a restart or a leader change: every session gets at least one
 * full TTL from now before it can expire, so a meta that was down (or a
 * leader that just took over) never expires sessions whose renewals it could
 * not have received.
 */
export async function graceSessions(env: MetaEnv): Promise<number> {
  const now = clockMs(null)
  const r = await env.db.write((tx) => tx.run('UPDATE sessions SET expires = ? + ttl_ms WHERE expires < ? + ttl_ms', [now, now]))
  return r.changes
}
