/**
 * Which berth processes may work together. Every client and data node
 * announces the wire protocol it speaks (the meta hello request, every
 * heartbeat); meta serves peers within [MIN_PEER_PROTOCOL, PROTOCOL] and
 * refuses others with a message that names both sides and what to upgrade.
 * A client also refuses a meta older than itself (an old meta does not check).
 *
 * PROTOCOL is bumped when a message changes so that an older peer would
 * misread it; MIN_PEER_PROTOCOL is raised only when this meta can no longer
 * serve peers of an older protocol. Peers within the range must also work
 * with each other on the data plane (client <-> node HTTP, node <-> node
 * chains), so a data-plane change that older nodes cannot serve raises it too.
 * Rolling upgrades go meta first, then nodes, then clients (docs/deploy.md#upgrading).
 *
 * Peers that announce nothing predate the check and speak protocol 1.
 */
import { versionInfo } from '../cli/version'

/**
 * The protocol this build speaks. 2: commit carries utimensat's times,
 * release carries late open registrations (holds), chunks may return the
 * attributes, namespace replies the changed directories, invalidations their
 * origin (`by`). A protocol-1 meta would drop the times of a futimens made
 * before close, so a client of 2 must not use one (it refuses it, see above);
 * a meta of 2 still serves clients of 1, which send none of these.
 */
// 3: commit carries a fresh file's deferred chmod/chown (mode, uid, gid); a
// meta of 2 would drop them, so a client of 3 refuses it like any older meta.
// Not bumped for `clonechunks` (copy_file_range inside the cluster): a new op
// changes no existing message, a meta without it answers ENOSYS (unknown
// operation) and the client then copies by read + write (client/copy-range.ts).
// 4: `ahead` carries a directory's setattr (chmod, chown, utimens answered
// before meta applied them); a meta of 3 would refuse the whole batch.
export const PROTOCOL = 4
/**
 * The oldest protocol this meta serves, per kind of peer. Clients: 2, because
 * a file may now hold chunks in slices (appends, docs/data-node.md#appends): a
 * client of 1 ignores the slices and would read zeros past a chunk's first
 * block. Nodes: 1 (nothing a node does changed), so meta can be upgraded first.
 */
export const MIN_PEER_PROTOCOL: Readonly<Record<PeerKind, number>> = { client: 2, node: 1 }
/** What a peer that announces no protocol speaks (releases before the check). */
export const UNANNOUNCED_PROTOCOL = 1

/**
 * The protocol this process announces: PROTOCOL, unless BERTH_FAKE_PROTOCOL
 * says otherwise. That variable exists for tests (a client or node that
 * claims to be older or newer than it is); never set it in production.
 */
export function announcedProtocol(env: NodeJS.ProcessEnv = process.env): number {
  const fake = env.BERTH_FAKE_PROTOCOL
  if (fake === undefined || fake === '') return PROTOCOL
  const n = Number(fake)
  if (!Number.isInteger(n) || n < 0) throw new Error(`BERTH_FAKE_PROTOCOL must be a non-negative integer, got "${fake}"`)
  return n
}

let cachedRelease: string | undefined
/** "0.1.0 (commit abc123def456)": the release a process announces beside its protocol. */
export function releaseName(): string {
  if (cachedRelease === undefined) {
    const v = versionInfo()
    cachedRelease = `${v.version} (commit ${v.commit})`
  }
  return cachedRelease
}

export type PeerKind = 'client' | 'node'

export interface Announced {
  protocol?: number
  release?: string
}

/**
 * Null when meta serves this peer; otherwise why not, in a sentence that
 * names the peer's protocol and release, meta's range and release, and what
 * to upgrade. `who` names the peer in the message ("node n-1a2b", "this client").
 */
export function refusePeer(kind: PeerKind, who: string, peer: Announced, metaRelease = releaseName()): string | null {
  const p = peer.protocol ?? UNANNOUNCED_PROTOCOL
  const min = MIN_PEER_PROTOCOL[kind]
  if (p >= min && p <= PROTOCOL) return null
  const theirs = `${who} speaks berth protocol ${p} (berth ${peer.release ?? 'unknown release'})`
  const ours = `meta (berth ${metaRelease}) serves ${kind}s of protocols ${min} to ${PROTOCOL}`
  const fix =
    p < min
      ? `upgrade the ${kind === 'node' ? 'node' : 'client (berth on the mounting host)'} to a release that speaks protocol ${min} or later`
      : `upgrade meta first (rolling order: meta, then nodes, then clients), or run a ${kind} of a release that speaks protocol ${PROTOCOL}`
  return `refused by meta: ${theirs}; ${ours}: ${fix} (docs/deploy.md#upgrading)`
}

/**
 * Null when this client can use the meta that answered its hello; otherwise
 * why not. A meta older than the client may lack what the client sends; a
 * meta of this release or later refuses such a client itself, an older one
 * (without the check) would not.
 */
export function refuseMeta(meta: Announced, client: { protocol: number; release: string }): string | null {
  const m = meta.protocol ?? UNANNOUNCED_PROTOCOL
  if (m >= client.protocol) return null
  return `meta speaks berth protocol ${m} (berth ${meta.release ?? 'release before version checks'}), this client speaks ${client.protocol} (berth ${client.release}): upgrade meta first (rolling order: meta, then nodes, then clients; docs/deploy.md#upgrading)`
}
