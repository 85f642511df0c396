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

const built = join(dir, 'build', 'Release', 'fuse.node')
const needsBuild = !existsSync(built) || !readFileSync(built).includes('fuse_native_set_caller_buffer')
if (needsBuild) {
  const gyp = require.resolve('node-gyp/bin/node-gyp.js')
  // Build against the installed Node headers when they exist (no download needed).
  const nodedir = process.env.npm_config_nodedir || (existsSync('/usr/include/node/node_api.h') ? '/usr' : '')
  const args = [gyp, 'rebuild', ...(nodedir ? [`--nodedir=${nodedir}`] : [])]
  execFileSync(process.execPath, args, { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] })
}
console.log('fuse-native: caller context patch applied')
