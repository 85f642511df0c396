/*
 * Page-aligned buffers for a data node's O_DIRECT block writes
 * (node/block-buffer.ts).
 *
 * A block written through the page cache costs the node a copy of every byte
 * into the cache, and the kernel's writeback and the fsync another pass; on
 * this project's test host that was the largest item of a node's CPU
 * (docs/bench.md "O_DIRECT block writes"). O_DIRECT skips both, but Linux
 * requires the memory, the file offset and the length to be aligned to the
 * device's logical block size, and a Node Buffer's memory is not (a 4 MiB
 * ArrayBuffer comes from malloc: a page plus its 16-byte header).
 *
 * alignedBuffer(size) -> Buffer: `size` bytes (not zeroed) at an address
 * aligned to ALIGN, freed when the Buffer is collected. The memory is counted
 * as V8 external memory, so the collector sees what these buffers hold.
 */
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>

/* 4 KiB: every logical block size Linux file systems use for O_DIRECT */
#define ALIGN 4096

static void release(napi_env env, void *data, void *hint) {
  int64_t adjusted;
  napi_adjust_external_memory(env, -(int64_t)(uintptr_t)hint, &adjusted);
  free(data);
}

static napi_value aligned_buffer(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  int64_t size;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int64(env, argv[0], &size) != napi_ok) {
    napi_throw_type_error(env, NULL, "alignedBuffer(size)");
    return NULL;
  }
  /* 1 GiB is far past any block (maxBlock is at most 64 MiB) */
  if (size <= 0 || size > (int64_t)1 << 30) {
    napi_throw_range_error(env, NULL, "alignedBuffer: size must be 1 byte to 1 GiB");
    return NULL;
  }
  void *p = NULL;
  if (posix_memalign(&p, ALIGN, (size_t)size) != 0) {
    napi_throw_error(env, "ENOMEM", "alignedBuffer: out of memory");
    return NULL;
  }
  if (napi_create_external_buffer(env, (size_t)size, p, release, (void *)(uintptr_t)size, &result) != napi_ok) {
    free(p);
    napi_throw_error(env, NULL, "alignedBuffer: cannot wrap the memory");
    return NULL;
  }
  int64_t adjusted;
  napi_adjust_external_memory(env, size, &adjusted);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn, align;
  napi_create_function(env, "alignedBuffer", NAPI_AUTO_LENGTH, aligned_buffer, NULL, &fn);
  napi_set_named_property(env, exports, "alignedBuffer", fn);
  napi_create_uint32(env, ALIGN, &align);
  napi_set_named_property(env, exports, "align", align);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
