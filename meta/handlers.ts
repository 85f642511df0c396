/**
 * The operation table: one handler per key of `metaRequests`, typed so that a
 * new operation in the protocol fails to compile until it is handled here.
 */
import type { MetaOp, MetaParsed, MetaReplies } from '../common/protocol'
import { hello, statfs, status } from './cluster-ops'
import type { Changes, MetaEnv } from './context'
import { badCopy, inventory } from './copies'
import { dumpEnd, dumpRead, dumpStart } from './dump'
import { gcPlan, gcRun } from './gc-ops'
import { getlk, lock } from './locks'
import { nodeAdmin } from './node-admin'
import { chunks, clonechunks, commit, open, pin, release, sessionEnd, unpin } from './files'
import { session, sessionRestore } from './sessions'
import { ahead, getattr, inos, link, lookup, mkdir, mknod, readdir, readlink, rename, rmdir, setattr, symlink, unlink } from './namespace'
import { getxattr, listxattr, removexattr, setxattr } from './xattrs'

export type Handler<Op extends MetaOp> = (env: MetaEnv, body: MetaParsed<Op>, changes: Changes) => Promise<MetaReplies[Op]> | MetaReplies[Op]
export type Handlers = { [Op in MetaOp]: Handler<Op> }

export const handlers: Handlers = {
  hello: (env, body) => hello(env, body),
  lookup,
  getattr,
  setattr,
  mknod,
  mkdir,
  unlink,
  rmdir,
  ahead,
  inos,
  rename,
  link,
  symlink,
  readlink,
  readdir,
  statfs: (env) => statfs(env),
  getxattr,
  setxattr,
  listxattr,
  removexattr,
  open,
  chunks,
  commit,
  clonechunks,
  release,
  session,
  sessionRestore,
  sessionEnd,
  lock,
  getlk,
  status: (env) => status(env),
  pin,
  unpin,
  badCopy,
  inventory,
  nodeAdmin,
  gcPlan: (env) => gcPlan(env),
  gcRun: (env) => gcRun(env),
  dumpStart: (env) => dumpStart(env),
  dumpRead,
  dumpEnd,
}
