/*
 * CRC32 piece sums (common/checksums.ts) computed on libuv's thread pool.
 *
 * A mount reading cold is bound by its JS thread (docs/bench.md): checking a
 * fetched 4 MiB block against its 64 piece sums took about a tenth of it.
 * Here the same sums are computed by zlib's crc32_z, the one node:zlib's
 * crc32 calls (Node links zlib in and exports its symbols to addons), on a
 * pool thread, while the JS thread goes on serving other requests.
 *
 * crc32Pieces(bytes, piece) -> Promise<Buffer>: 4 bytes big-endian per
 * `piece` bytes of `bytes` (the last piece may be shorter), as pieceSums().
 * The caller must not write to `bytes` until the promise settles (a fetched
 * block is nobody else's yet); a reference keeps its memory alive meanwhile.
 *
 * No libfuse here: data nodes and tools may load it on machines without FUSE.
 * Without crc32_z in the running node (a build that hides zlib's symbols) the
 * module exports nothing and common/async-checksums.ts computes on the JS
 * thread as before.
 *
 * libdeflate's libdeflate_crc32 (Debian's libdeflate0), when the machine has
 * it, instead of zlib's: the same CRC-32, folded with PCLMULQDQ, 0.07 s per
 * GiB here against zlib's 0.22-0.26 (docs/bench.md "CRC32 by libdeflate").
 * It is opened at load (dlopen), so building needs no libdeflate-dev and a
 * machine without it keeps zlib's; `crc32Impl` says which one runs.
 */
#include <dlfcn.h>
#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* zlib's, resolved from the node binary at load; weak: absent -> NULL */
extern unsigned long crc32_z(unsigned long crc, const unsigned char *buf, size_t len) __attribute__((weak));

/* libdeflate's, when libdeflate.so.0 could be opened at load: the same CRC-32 (IEEE), faster */
typedef uint32_t (*deflate_crc32_fn)(uint32_t crc, const void *buf, size_t len);
static deflate_crc32_fn deflate_crc32;

struct job {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref bytes_ref;   /* keeps the input alive until done */
  const unsigned char *bytes;
  size_t len, piece, pieces;
  unsigned char *out;   /* pieces * 4, big-endian */
};

static void run(napi_env env, void *data) {
  (void)env;
  struct job *j = data;
  for (size_t i = 0; i < j->pieces; i++) {
    size_t start = i * j->piece;
    size_t n = j->len - start < j->piece ? j->len - start : j->piece;
    uint32_t c = deflate_crc32 ? deflate_crc32(0, j->bytes + start, n) : (uint32_t)crc32_z(0, j->bytes + start, n);
    j->out[i * 4] = (unsigned char)(c >> 24);
    j->out[i * 4 + 1] = (unsigned char)(c >> 16);
    j->out[i * 4 + 2] = (unsigned char)(c >> 8);
    j->out[i * 4 + 3] = (unsigned char)c;
  }
}

static void free_out(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  free(data);
}

static void done(napi_env env, napi_status status, void *data) {
  struct job *j = data;
  napi_value result;
  if (status == napi_ok && napi_create_external_buffer(env, j->pieces * 4, j->out, free_out, NULL, &result) == napi_ok) {
    napi_resolve_deferred(env, j->deferred, result);
  } else {
    free(j->out);
    napi_value msg, err;
    napi_create_string_utf8(env, "crc32Pieces failed", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, j->deferred, err);
  }
  napi_delete_reference(env, j->bytes_ref);
  napi_delete_async_work(env, j->work);
  free(j);
}

static napi_value crc32_pieces(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], promise, name;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, NULL, "crc32Pieces(bytes, piece)");
    return NULL;
  }
  napi_typedarray_type type;
  size_t len, offset;
  void *bytes;
  napi_value ab;
  bool is_ta = false;
  napi_is_typedarray(env, argv[0], &is_ta);
  if (!is_ta || napi_get_typedarray_info(env, argv[0], &type, &len, &bytes, &ab, &offset) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "bytes must be a Uint8Array");
    return NULL;
  }
  int64_t piece = 0;
  if (napi_get_value_int64(env, argv[1], &piece) != napi_ok || piece <= 0) {
    napi_throw_range_error(env, NULL, "piece must be a positive integer");
    return NULL;
  }
  struct job *j = calloc(1, sizeof *j);
  size_t pieces = (len + (size_t)piece - 1) / (size_t)piece;
  unsigned char *out = malloc(pieces * 4 + 1); /* +1: never malloc(0) for an empty input */
  if (!j || !out) {
    free(j);
    free(out);
    napi_throw_error(env, "ENOMEM", "crc32Pieces: out of memory");
    return NULL;
  }
  j->bytes = bytes;
  j->len = len;
  j->piece = (size_t)piece;
  j->pieces = pieces;
  j->out = out;
  napi_create_reference(env, argv[0], 1, &j->bytes_ref);
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "berth:crc32Pieces", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, run, done, j, &j->work);
  napi_queue_async_work(env, j->work);
  return promise;
}

static napi_value init(napi_env env, napi_value exports) {
  /* BERTH_CRC32=zlib keeps zlib's (tests compare the two) */
  const char *want = getenv("BERTH_CRC32");
  void *lib = want && strcmp(want, "zlib") == 0 ? NULL : dlopen("libdeflate.so.0", RTLD_NOW | RTLD_LOCAL);
  if (lib) deflate_crc32 = (deflate_crc32_fn)dlsym(lib, "libdeflate_crc32");
  if (!crc32_z && !deflate_crc32) return exports;
  napi_value fn, impl;
  napi_create_function(env, "crc32Pieces", NAPI_AUTO_LENGTH, crc32_pieces, NULL, &fn);
  napi_set_named_property(env, exports, "crc32Pieces", fn);
  napi_create_string_utf8(env, deflate_crc32 ? "libdeflate" : "zlib", NAPI_AUTO_LENGTH, &impl);
  napi_set_named_property(env, exports, "crc32Impl", impl);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
