/**
 * Who is calling the current FUSE operation (uid, gid, pid), from berth's
 * patch of fuse-native (tools/patch-fuse-native.js). The native dispatcher
 * writes the caller into `shared` right before it runs a handler, and handlers
 * run synchronously inside that dispatch: read `caller()` at the very start of
 * a handler, before any await.
 */
import { dirname } from 'node:path'

interface FuseBinding {
  fuse_native_set_caller_buffer?: (buf: Buffer) => void
}

// Over 64 bytes so V8 keeps the bytes off-heap at a fixed address the addon can hold.
const shared = Buffer.alloc(256)
const view = new Uint32Array(shared.buffer, shared.byteOffset, 3)

function install(): boolean {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const load = require('node-gyp-build') as (dir: string) => FuseBinding
  const binding = load(dirname(require.resolve('fuse-native/package.json')))
  if (typeof binding.fuse_native_set_caller_buffer !== 'function') return false
  binding.fuse_native_set_caller_buffer(shared)
  return true
}

/** False when fuse-native was not rebuilt with the patch (then callers look like the mount's owner). */
export const callerContextAvailable = install()

export interface Caller {
  uid: number
  gid: number
  pid: number
}

export function caller(): Caller {
  if (!callerContextAvailable) return { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, pid: 0 }
  return { uid: view[0]!, gid: view[1]!, pid: view[2]! }
}
