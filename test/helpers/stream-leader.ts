/** The meta log's JetStream stream leader: which server it is on, and moving it. */
import type { TestCluster } from './cluster'
import { streamName } from '../../meta/log/stream'

/** Server name of the log's stream leader (undefined: none right now). */
export async function streamLeader(c: TestCluster): Promise<string | undefined> {
  const nc = await c.connect('meta')
  try {
    // right after a server's death JetStream may not answer at all (its
    // meta-leader election): jetstreamManager()'s account request then times
    // out, which means "no leader yet", as a failed info does
    const jsm = await nc.jetstreamManager().catch(() => undefined)
    if (!jsm) return undefined
    return await jsm.streams.info(streamName(c.cluster)).then((info) => info.cluster?.leader, () => undefined)
  } finally {
    await nc.close()
  }
}

/**
 * Moves the meta log's JetStream stream leader onto server `name` (asking the
 * current leader to step down until the election lands there); false if it
 * did not within a few tries.
 */
export async function streamLeaderOn(c: TestCluster, name: string): Promise<boolean> {
  const nc = await c.connect('meta')
  try {
    const jsm = await nc.jetstreamManager()
    const stream = streamName(c.cluster)
    for (let i = 0; i < 12; i++) {
      // right after a step-down the stream may have no leader for a moment
      const leader = await jsm.streams.info(stream).then((info) => info.cluster?.leader, () => undefined)
      if (leader === name) return true
      if (leader === undefined) {
        await new Promise((r) => setTimeout(r, 500))
        continue
      }
      await nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${stream}`, undefined, { timeout: 5000 }).catch(() => undefined)
      await new Promise((r) => setTimeout(r, 500))
    }
    return false
  } finally {
    await nc.close()
  }
}
