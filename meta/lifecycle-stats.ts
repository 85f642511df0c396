/** Counters of the block lifecycle loops, read by meta's /metrics and logs. */
export class LifecycleStats {
  /** Blocks whose rows GC removed. */
  gcBlocks = 0
  /** Replica rows removed because the node did not have the copy. */
  rowsRemoved = 0
  /** Replica rows added for copies of referenced blocks meta did not list. */
  rowsAdded = 0
  /** Orphan copies (no block meta knows) moved to trash on their node. */
  orphansDeleted = 0
  /** Orphans a node kept because they were PUT after the decision. */
  orphansKept = 0
  /** Copies beyond R removed. */
  trimmed = 0
  /** Copies removed from draining nodes after their blocks had homes elsewhere. */
  drained = 0
  /** Copies made by rebalance (their old copies are then trimmed). */
  rebalanced = 0
  /** Copies made by repair. */
  repaired = 0
  /** Bytes of the copies made by repair. */
  repairedBytes = 0
  /** Suspect copies (reported bad) that their node's re-hash found corrupt and trashed. */
  corrupt = 0
  /** Full reconciliation passes over one node's inventory. */
  reconcilePasses = 0
}
