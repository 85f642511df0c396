#!/usr/bin/env node
'use strict'
/*
 * fuse-native does not tell a handler who is calling (fuse_get_context), so a
 * file created by an unprivileged user would be owned by the mount's user.
 * This patch makes the FUSE thread record the caller's uid, gid and pid before
 * it hands an operation to JavaScript; the dispatcher copies them into a small
 * buffer that JavaScript registers once (fuse_native_set_caller_buffer) and
 * reads synchronously at the start of each handler (client/caller-context.ts).
 * The handler runs synchronously inside the dispatch, so the buffer always
 * describes the operation being handled.
 *
 * A second patch (BERTH_NULLPATH_UTIMENS) fixes two faults of the binding:
 * - With `hard_remove`, libfuse hands ops on an unlinked-but-open file a NULL
 *   path. fuse-native neither sets flag_nullpath_ok (so libfuse answered
 *   read/write/fstat on such a handle with ENOENT) nor survives a NULL path
 *   (napi_create_string_utf8(NULL) left an argument unset and the session
 *   aborted: every later op on the mount failed with ENOTCONN). Now libfuse
 *   calls the fd-based ops with a NULL path and JavaScript receives "".
 * - utimens passed the atime twice (the mtime never reached JavaScript) and
 *   squeezed both times into milliseconds, where UTIME_NOW and UTIME_OMIT look
 *   alike. Now it passes each time as (seconds, nanoseconds) exactly; the
 *   client overrides `_op_utimens` to read them (client/fuse-adapter.ts).
 * `fuse_native_berth_patch_level` tells the client which patches it has.
 *
 * Runs at npm install (postinstall); idempotent; rebuilds the addon from source
 * with node-gyp against fuse-shared-library's bundled libfuse headers.
 */
const { readFileSync, writeFileSync, existsSync } = require('node:fs')
const { join, dirname } = require('node:path')
const { execFileSync } = require('node:child_process')

const MARKER = 'BERTH_CALLER_CONTEXT'
const dir = dirname(require.resolve('fuse-native/package.json'))
const src = join(dir, 'fuse-native.c')
let c = readFileSync(src, 'utf8')

function replaceOnce(from, to) {
  if (!c.includes(from)) throw new Error(`patch-fuse-native: anchor not found: ${from.slice(0, 60)}`)
  c = c.replace(from, to)
}

if (!c.includes(MARKER)) {
  replaceOnce('typedef struct {\n  napi_ref self;\n', `typedef struct {\n  napi_ref self;\n  uint32_t caller[3]; /* ${MARKER}: uid, gid, pid */\n`)
  replaceOnce(
    '#define FUSE_NATIVE_HANDLER(name, blk)\\\n  fuse_thread_locals_t *l = get_thread_locals();\\\n',
    '#define FUSE_NATIVE_HANDLER(name, blk)\\\n  fuse_thread_locals_t *l = get_thread_locals();\\\n' +
      '  { struct fuse_context *fc_ = fuse_get_context(); l->caller[0] = fc_->uid; l->caller[1] = fc_->gid; l->caller[2] = fc_->pid; }\\\n',
  )
  replaceOnce(
    'static void fuse_native_dispatch (uv_async_t* handle) {\n  fuse_thread_locals_t *l = (fuse_thread_locals_t *) handle->data;\n',
    'static uint32_t *berth_caller_buf = NULL;\n\nNAPI_METHOD(fuse_native_set_caller_buffer) {\n  NAPI_ARGV(1)\n  NAPI_ARGV_BUFFER_CAST(uint32_t *, buf, 0);\n  if (buf_len < 3 * sizeof(uint32_t)) napi_throw_error(env, NULL, "caller buffer too small");\n  else berth_caller_buf = buf;\n  return NULL;\n}\n\n' +
      'static void fuse_native_dispatch (uv_async_t* handle) {\n  fuse_thread_locals_t *l = (fuse_thread_locals_t *) handle->data;\n' +
      '  if (berth_caller_buf != NULL) { berth_caller_buf[0] = l->caller[0]; berth_caller_buf[1] = l->caller[1]; berth_caller_buf[2] = l->caller[2]; }\n',
  )
  replaceOnce('  NAPI_EXPORT_FUNCTION(fuse_native_mount)\n', '  NAPI_EXPORT_FUNCTION(fuse_native_mount)\n  NAPI_EXPORT_FUNCTION(fuse_native_set_caller_buffer)\n')
  writeFileSync(src, c)
}

const MARKER2 = 'BERTH_NULLPATH_UTIMENS'
if (!c.includes(MARKER2)) {
  replaceOnce(`  uint32_t caller[3]; /* ${MARKER}: uid, gid, pid */\n`, `  uint32_t caller[3]; /* ${MARKER}: uid, gid, pid */\n  struct timespec berth_tv[2]; /* ${MARKER2}: utimens times as given */\n`)
  const nullable = 'napi_create_string_utf8(env, l->path, NAPI_AUTO_LENGTH,'
  if (!c.includes(nullable)) throw new Error('patch-fuse-native: anchor not found: path argument')
  c = c.split(nullable).join('napi_create_string_utf8(env, l->path ? l->path : "", NAPI_AUTO_LENGTH,')
  replaceOnce('  struct fuse_operations ops = { };\n', '  struct fuse_operations ops = { };\n  ops.flag_nullpath_ok = 1;\n')
  replaceOnce(
    '  l->atime = timespec_to_uint64(&tv[0]);\n  l->mtime = timespec_to_uint64(&tv[1]);\n',
    '  l->berth_tv[0] = tv[0];\n  l->berth_tv[1] = tv[1];\n',
  )
  replaceOnce(
    '  FUSE_UINT64_TO_INTS_ARGV(l->atime, 3)\n  FUSE_UINT64_TO_INTS_ARGV(l->atime, 5)\n',
    '  napi_create_double(env, (double) l->berth_tv[0].tv_sec, &(argv[3]));\n  napi_create_uint32(env, (uint32_t) l->berth_tv[0].tv_nsec, &(argv[4]));\n' +
      '  napi_create_double(env, (double) l->berth_tv[1].tv_sec, &(argv[5]));\n  napi_create_uint32(env, (uint32_t) l->berth_tv[1].tv_nsec, &(argv[6]));\n',
  )
  replaceOnce(
    'static void fuse_native_dispatch (uv_async_t* handle) {\n',
    `NAPI_METHOD(fuse_native_berth_patch_level) {\n  napi_value level;\n  napi_create_uint32(env, 2, &level); /* ${MARKER2} */\n  return level;\n}\n\nstatic void fuse_native_dispatch (uv_async_t* handle) {\n`,
  )
  replaceOnce('  NAPI_EXPORT_FUNCTION(fuse_native_set_caller_buffer)\n', '  NAPI_EXPORT_FUNCTION(fuse_native_set_caller_buffer)\n  NAPI_EXPORT_FUNCTION(fuse_native_berth_patch_level)\n')
  writeFileSync(src, c)
}

const built = join(dir, 'build', 'Release', 'fuse.node')
const needsBuild = !existsSync(built) || !readFileSync(built).includes('fuse_native_berth_patch_level')
if (needsBuild) {
  const gyp = require.resolve('node-gyp/bin/node-gyp.js')
  // Build against the installed Node headers when they exist (no download needed).
  const nodedir = process.env.npm_config_nodedir || (existsSync('/usr/include/node/node_api.h') ? '/usr' : '')
  const args = [gyp, 'rebuild', ...(nodedir ? [`--nodedir=${nodedir}`] : [])]
  execFileSync(process.execPath, args, { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] })
}
console.log('fuse-native: caller context, null path and utimens patches applied')
