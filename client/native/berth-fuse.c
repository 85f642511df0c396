/*
 * berth's FUSE binding: libfuse 3's low-level API driven by Node's event loop.
 *
 * Threading model (docs/architecture.md, "The FUSE binding"):
 * - The session fd (/dev/fuse) is non-blocking and polled by libuv on the JS
 *   thread. When it is readable, requests are read with
 *   fuse_session_receive_buf and handed to libfuse's dispatcher with
 *   fuse_session_process_buf, both on the JS thread, a bounded batch at a time.
 * - Every op handler below only translates: it parks the fuse_req_t in a slot
 *   table and calls the JS dispatcher with the slot number and the op's
 *   arguments (copied into JS values: libfuse reuses its receive buffer). JS
 *   answers later, whenever its promise settles, with reply*(slot, ...), which
 *   calls fuse_reply_* synchronously: the reply is written to /dev/fuse before
 *   reply* returns, so no reply ever refers to memory anybody took back.
 * - Cache invalidations (fuse_lowlevel_notify_inval_*) may block in the kernel
 *   until a pending request for the same inode is answered, and requests are
 *   answered by the JS thread: a notify on the JS thread could deadlock. They
 *   are queued to one notifier thread, which never touches JS.
 * One session per process.
 */
#define FUSE_USE_VERSION 34
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

/* Opcodes passed to the JS dispatcher; mirrored by OP in client/fuse-binding.ts. */
enum {
  OP_LOOKUP = 1, OP_GETATTR, OP_SETATTR, OP_READLINK, OP_MKNOD, OP_MKDIR, OP_UNLINK,
  OP_RMDIR, OP_SYMLINK, OP_RENAME, OP_LINK, OP_OPEN, OP_READ, OP_WRITE, OP_FLUSH,
  OP_RELEASE, OP_FSYNC, OP_OPENDIR, OP_READDIR, OP_RELEASEDIR, OP_STATFS, OP_SETXATTR,
  OP_GETXATTR, OP_LISTXATTR, OP_REMOVEXATTR, OP_CREATE, OP_FALLOCATE, OP_FORGET,
  OP_COPY_FILE_RANGE, OP_FSYNCDIR, OP_GETLK, OP_SETLK, OP_FLOCK, OP_INTERRUPT, OP_LSEEK,
};

/* Attributes travel from JS as a Float64Array of these fields. */
enum { A_INO, A_MODE, A_NLINK, A_UID, A_GID, A_RDEV, A_SIZE, A_BLOCKS, A_ATIME, A_ATIME_NS,
       A_MTIME, A_MTIME_NS, A_CTIME, A_CTIME_NS, A_BLKSIZE, A_ACL, A_FIELDS };

/* Requests JS has not answered yet; a slot number is what JS holds. */
static fuse_req_t *slots;
static uint32_t nslots;
static uint32_t *free_slots;
static uint32_t nfree;

static struct {
  struct fuse_session *se;
  napi_env env;
  napi_ref dispatch;   /* (op, slot, ...args) => void */
  napi_ref on_exit;    /* () => void, once the kernel ended the session */
  napi_ref on_ack;     /* (ino) => void, an invalidation asked with ack is done */
  napi_ref resource;
  napi_async_context actx;
  uv_poll_t poll;
  int polling;
  int mounted;
  struct fuse_buf buf; /* libfuse's receive buffer, reused for every request */
  unsigned max_write;
  int no_opendir;      /* the kernel takes ENOSYS from opendir as "send no opendir/releasedir" */
  int local_locks;     /* -o local_locks: the kernel keeps locks on this machine (no getlk/setlk/flock) */
  int acl;             /* POSIX ACLs asked for (-o acl) */
  int acl_on;          /* ... and granted at INIT: the kernel enforces them and leaves the umask to us */
  int acl_all_to_js;   /* the ACL table gave up (no memory, or ACL_TABLE_MAX inodes): JS answers every ACL getxattr */
  int passthrough;     /* passthrough asked for (mount flag 4) */
  int pt_on;           /* ... and offered by the kernel at INIT, so our INIT reply enables it */
  uint64_t cur_unique; /* the request fuse_session_process_buf is dispatching */
  uint64_t init_unique;        /* the INIT request's unique: its reply gets the passthrough bits */
  uint64_t patch_unique;       /* an OPEN reply being written that opens in passthrough mode ... */
  int32_t patch_backing;       /* ... on this backing id */
} S;

/* the inodes with POSIX ACLs, as their attributes say (defined with attr_from) */
#define ACL_UNKNOWN 4 /* no bits known: JS answers */
/*
 * Inodes with ACLs (or unknown) the table holds at most: about 40 MiB; past
 * it JS answers every ACL question. BERTH_ACL_TABLE_MAX sets it (tests).
 */
#define ACL_TABLE_MAX (1u << 20)
static size_t acl_table_max = ACL_TABLE_MAX;
static void acl_note(uint64_t ino, int bits);
static int acl_bits(uint64_t ino);
static int acl_name_bit(const char *name);
static void acl_reset(void);

#define CHECK(call) do { if ((call) != napi_ok) { napi_throw_error(env, NULL, #call " failed"); return NULL; } } while (0)

/* ---- slots ---- */

static int64_t park(fuse_req_t req) {
  if (nfree == 0) {
    uint32_t grow = nslots ? nslots : 256;
    fuse_req_t *ns = realloc(slots, (nslots + grow) * sizeof *ns);
    uint32_t *nf = realloc(free_slots, (nslots + grow) * sizeof *nf);
    if (ns) slots = ns;
    if (nf) free_slots = nf;
    if (!ns || !nf) return -1;
    for (uint32_t i = nslots + grow; i > nslots; i--) {
      slots[i - 1] = NULL; /* empty: unpark and unmount rely on it */
      free_slots[nfree++] = i - 1;
    }
    nslots += grow;
  }
  uint32_t s = free_slots[--nfree];
  slots[s] = req;
  return s;
}

/* Takes the request out of its slot (a slot is answered once). NULL: no such request. */
static fuse_req_t unpark(uint32_t s) {
  if (s >= nslots || slots[s] == NULL) return NULL;
  fuse_req_t req = slots[s];
  slots[s] = NULL;
  free_slots[nfree++] = s;
  return req;
}

/* ---- calling JS ---- */

static napi_value num(double v) {
  napi_value out;
  napi_create_double(S.env, v, &out);
  return out;
}

static napi_value str(const char *s) {
  napi_value out;
  napi_create_string_utf8(S.env, s, NAPI_AUTO_LENGTH, &out);
  return out;
}

static napi_value bytes(const char *p, size_t n) {
  napi_value out;
  void *data;
  napi_create_buffer_copy(S.env, n, p, &data, &out);
  return out;
}

/*
 * Parks `req` and calls dispatch(op, slot, ...args). A dispatcher that throws
 * (a bug) costs that request EIO, never the mount.
 */
static int64_t call(fuse_req_t req, int op, size_t argc, napi_value *args) {
  napi_env env = S.env;
  int64_t slot = req ? park(req) : -1;
  if (req && slot < 0) {
    fuse_reply_err(req, ENOMEM);
    return -1;
  }
  napi_value argv[16];
  argv[0] = num(op);
  argv[1] = num((double)slot);
  for (size_t i = 0; i < argc && i < 14; i++) argv[i + 2] = args[i];
  napi_value fn, global, ignored;
  napi_get_reference_value(env, S.dispatch, &fn);
  napi_get_global(env, &global);
  if (napi_call_function(env, global, fn, argc + 2, argv, &ignored) != napi_ok) {
    napi_value exc;
    napi_get_and_clear_last_exception(env, &exc);
    fprintf(stderr, "berth-fuse: dispatcher threw on op %d\n", op);
    if (req && unpark((uint32_t)slot)) fuse_reply_err(req, EIO);
    return -1;
  }
  return slot;
}

#define ARGS(...) napi_value a[] = { __VA_ARGS__ }; call(req, OP, sizeof a / sizeof a[0], a)

/*
 * Names are bytes to the kernel and text to meta. A name that is UTF-8 (RFC
 * 3629: no overlong forms, no UTF-16 surrogates, nothing past U+10FFFF) goes
 * to JS as it is. Any other byte b (always 0x80-0xff) goes as the two
 * characters U+F700 U+F700+b, so "caf\xe9" and "caf\xe8" stay two names and
 * come back byte for byte (readdir, readlink, listxattr, invalidations). A
 * U+F700 the name really holds is doubled where the next character could
 * read as an escape (U+F700 or U+F780-U+F7FF next, or a raw byte), else kept:
 * names stored before this encoding keep their meaning. common/names.ts counts
 * a name's bytes the same way (NAME_MAX is of the kernel's bytes).
 * docs/semantics.md#names.
 */
#define ESC 0xf700u

/* Length of the RFC 3629 sequence at s and its code point; 0 when none starts there. */
static int utf8_seq(const unsigned char *s, unsigned *out) {
  unsigned c = *s, cp, min;
  int n;
  if (c < 0x80) { *out = c; return 1; }
  if ((c & 0xe0) == 0xc0) { n = 1; cp = c & 0x1f; min = 0x80; }
  else if ((c & 0xf0) == 0xe0) { n = 2; cp = c & 0x0f; min = 0x800; }
  else if ((c & 0xf8) == 0xf0) { n = 3; cp = c & 0x07; min = 0x10000; }
  else return 0;
  for (int i = 1; i <= n; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0; /* a continuation byte; the NUL ends it here */
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  *out = cp;
  return n + 1;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* Whether the unit at s (raw bytes) encodes to something that begins like an escape's second half. */
static int escapes_next(const unsigned char *s) {
  unsigned cp;
  if (!*s) return 0;
  if (!utf8_seq(s, &cp)) return 1; /* a raw byte: encoded as U+F700 ... */
  return cp == ESC || (cp >= ESC + 0x80 && cp <= ESC + 0xff);
}

/* A raw name as JS text (see above). */
static napi_value name_str(const char *raw) {
  const unsigned char *s = (const unsigned char *)raw;
  size_t len = strlen(raw), i = 0;
  int plain = 1;
  for (unsigned cp; i < len;) {
    int n = utf8_seq(s + i, &cp);
    if (!n || cp == ESC) { plain = 0; break; }
    i += (size_t)n;
  }
  if (plain) return str(raw);
  char *o = malloc(len * 6 + 1); /* at worst two 3-byte characters per byte */
  if (!o) return str("");
  size_t w = 0;
  for (i = 0; i < len;) {
    unsigned cp;
    int n = utf8_seq(s + i, &cp);
    if (!n) {
      w += put_utf8(o + w, ESC);
      w += put_utf8(o + w, ESC + s[i]);
      i++;
      continue;
    }
    memcpy(o + w, s + i, (size_t)n);
    w += (size_t)n;
    i += (size_t)n;
    if (cp == ESC && escapes_next(s + i)) w += put_utf8(o + w, ESC);
  }
  napi_value out;
  napi_create_string_utf8(S.env, o, w, &out);
  free(o);
  return out;
}

/*
 * The raw bytes of a name JS gives back (readdir, readlink, invalidations):
 * decoded in place (never longer), NUL-terminated; the new length.
 */
static size_t name_raw(char *t) {
  const unsigned char *s = (const unsigned char *)t;
  size_t len = strlen(t), r = 0, w = 0;
  while (r < len) {
    unsigned cp, next;
    int n = utf8_seq(s + r, &cp);
    if (n == 3 && cp == ESC) {
      int m = utf8_seq(s + r + 3, &next);
      if (m == 3 && next == ESC) { memmove(t + w, t + r, 3); w += 3; r += 6; continue; }
      if (m == 3 && next >= ESC + 0x80 && next <= ESC + 0xff) { t[w++] = (char)(next - ESC); r += 6; continue; }
    }
    if (n < 1) n = 1;
    memmove(t + w, t + r, (size_t)n);
    w += (size_t)n;
    r += (size_t)n;
  }
  t[w] = 0;
  return w;
}

#define FH(fi) ((fi) ? (double)(fi)->fh : -1.0)

/* ---- op handlers: translation only ---- */

static void ll_init(void *ud, struct fuse_conn_info *conn) {
  (void)ud;
  /*
   * The kernel keeps doing what it did for fuse-native: it clears suid/sgid
   * itself (no HANDLE_KILLPRIV) and sends O_TRUNC as a setattr (no
   * ATOMIC_O_TRUNC). No writeback cache: close-to-open needs every write here.
   */
  conn->want &= ~(FUSE_CAP_HANDLE_KILLPRIV | FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_WRITEBACK_CACHE |
                  FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  /* libfuse asked for both because the ops exist; -o local_locks declines them */
  if (S.local_locks) conn->want &= ~(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA) conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
  /*
   * POSIX ACLs: the kernel checks permissions against them (it asks for
   * system.posix_acl_access and caches the answer) and, with DONT_MASK, sends
   * the creator's umask instead of applying it, because under a directory
   * with a default ACL the umask does not apply (common/acl.ts). Both or
   * neither.
   */
  S.acl_on = S.acl && (conn->capable & FUSE_CAP_POSIX_ACL) && (conn->capable & FUSE_CAP_DONT_MASK);
  if (S.acl_on) conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
  else conn->want &= ~(FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK);
  /*
   * Directories need no handle (JS finds a listing by inode and offset), so
   * the first opendir is answered ENOSYS and the kernel sends no more opendir
   * or releasedir: two round trips fewer per directory listed. The kernel then
   * opens directories with FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR.
   */
  S.no_opendir = !!(conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT);
  /* libfuse asks the kernel for max_pages to match max_write (its buffer holds 1 MiB + header). */
  conn->max_write = S.max_write;
  conn->max_read = S.max_write;
  conn->max_readahead = S.max_write;
}

#define OP OP_LOOKUP
static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  ARGS(num((double)parent), name_str(name));
}
#undef OP

static void acl_forget(uint64_t ino);
static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  acl_forget(ino);
  napi_value a[] = { num((double)ino), num((double)nlookup) };
  call(NULL, OP_FORGET, 2, a);
  fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  for (size_t i = 0; i < count; i++) {
    acl_forget(forgets[i].ino);
    napi_value a[] = { num((double)forgets[i].ino), num((double)forgets[i].nlookup) };
    call(NULL, OP_FORGET, 2, a);
  }
  fuse_reply_none(req);
}

#define OP OP_GETATTR
static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  ARGS(num((double)ino), num(FH(fi)));
}
#undef OP

#define OP OP_SETATTR
static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *st, int to_set, struct fuse_file_info *fi) {
  ARGS(num((double)ino), num(FH(fi)), num(to_set), num(st->st_mode), num(st->st_uid), num(st->st_gid), num((double)st->st_size),
       num((double)st->st_atim.tv_sec), num((double)st->st_atim.tv_nsec), num((double)st->st_mtim.tv_sec), num((double)st->st_mtim.tv_nsec));
}
#undef OP

#define OP OP_READLINK
static void ll_readlink(fuse_req_t req, fuse_ino_t ino) { ARGS(num((double)ino)); }
#undef OP

#define CTX const struct fuse_ctx *ctx = fuse_req_ctx(req)
/* the creator's umask when it is ours to apply (ACLs granted), else 0: the kernel applied it */
#define UMASK num(S.acl_on ? (double)(ctx->umask & 0777) : 0)

#define OP OP_MKNOD
static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  CTX;
  ARGS(num((double)parent), name_str(name), num(mode), num((double)rdev), num(ctx->uid), num(ctx->gid), UMASK);
}
#undef OP

#define OP OP_MKDIR
static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  CTX;
  ARGS(num((double)parent), name_str(name), num(mode), num(ctx->uid), num(ctx->gid), UMASK);
}
#undef OP

#define OP OP_UNLINK
static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  ARGS(num((double)parent), name_str(name));
}
#undef OP
#define OP OP_RMDIR
static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  ARGS(num((double)parent), name_str(name));
}
#undef OP

#define OP OP_SYMLINK
static void ll_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name) {
  CTX;
  ARGS(name_str(target), num((double)parent), name_str(name), num(ctx->uid), num(ctx->gid));
}
#undef OP

#define OP OP_RENAME
static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname, unsigned int flags) {
  ARGS(num((double)parent), name_str(name), num((double)newparent), name_str(newname), num(flags));
}
#undef OP

#define OP OP_LINK
static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  ARGS(num((double)ino), num((double)newparent), name_str(newname));
}
#undef OP

#define OP OP_OPEN
static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { ARGS(num((double)ino), num(fi->flags), num((double)S.cur_unique)); }
#undef OP

#define OP OP_READ
static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  ARGS(num((double)ino), num(FH(fi)), num((double)size), num((double)off));
}
#undef OP

#define OP OP_WRITE
static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  /* copied: `buf` is libfuse's receive buffer, reused by the next request */
  ARGS(num((double)ino), num(FH(fi)), bytes(buf, size), num((double)off));
}
#undef OP

/* The kernel's 64-bit lock owner id as hex: a JS number would lose bits. */
static napi_value owner(uint64_t id) {
  char buf[17];
  snprintf(buf, sizeof buf, "%" PRIx64, id);
  return str(buf);
}

/* flush(ino, fh, owner): close(2) by that owner, whose POSIX locks on ino go */
#define OP OP_FLUSH
static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { ARGS(num((double)ino), num(FH(fi)), owner(fi->lock_owner)); }
#undef OP
/* release(ino, fh, flockOwner): the owner's flock lock goes with the handle ("" when it took none) */
#define OP OP_RELEASE
static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  ARGS(num((double)ino), num(FH(fi)), fi->flock_release ? owner(fi->lock_owner) : str(""));
}
#undef OP
#define OP OP_FSYNC
static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  ARGS(num((double)ino), num(FH(fi)), num(datasync));
}
#undef OP
#define OP OP_FSYNCDIR
static void ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  ARGS(num((double)ino), num(FH(fi)), num(datasync));
}
#undef OP
#define OP OP_OPENDIR
static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (S.no_opendir) {
    fuse_reply_err(req, ENOSYS);
    return;
  }
  ARGS(num((double)ino), num(fi->flags));
}
#undef OP

#define OP OP_READDIR
static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  ARGS(num((double)ino), num(FH(fi)), num((double)size), num((double)off), num(0));
}
static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  ARGS(num((double)ino), num(FH(fi)), num((double)size), num((double)off), num(1));
}
#undef OP

#define OP OP_RELEASEDIR
static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { ARGS(num((double)ino), num(FH(fi))); }
#undef OP
#define OP OP_STATFS
static void ll_statfs(fuse_req_t req, fuse_ino_t ino) { ARGS(num((double)ino)); }
#undef OP

#define OP OP_SETXATTR
static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags) {
  if (S.acl_on && acl_name_bit(name)) acl_note(ino, ACL_UNKNOWN); /* until its next attributes */
  ARGS(num((double)ino), name_str(name), bytes(value, size), num(flags));
}
#undef OP
#define OP OP_GETXATTR
static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  /*
   * security.* is never stored (docs/semantics.md#xattrs): answered here,
   * as JS would, without a trip to the JS thread. The kernel asks for
   * security.capability before writes (to clear file capabilities): about
   * three times per file in a `tar x`.
   */
  if (strncmp(name, "security.", 9) == 0) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  /* an ACL its attributes say it has not (acl_note) */
  int bit = S.acl_on ? acl_name_bit(name) : 0;
  if (bit && !(acl_bits(ino) & (bit | ACL_UNKNOWN))) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  ARGS(num((double)ino), name_str(name), num((double)size));
}
#undef OP
#define OP OP_LISTXATTR
static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) { ARGS(num((double)ino), num((double)size)); }
#undef OP
#define OP OP_REMOVEXATTR
static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  if (S.acl_on && acl_name_bit(name)) acl_note(ino, ACL_UNKNOWN); /* until its next attributes */
  ARGS(num((double)ino), name_str(name));
}
#undef OP

#define OP OP_CREATE
static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  CTX;
  ARGS(num((double)parent), name_str(name), num(mode), num(fi->flags), num(ctx->uid), num(ctx->gid), UMASK);
}
#undef OP

#define OP OP_FALLOCATE
static void ll_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len, struct fuse_file_info *fi) {
  ARGS(num((double)ino), num(FH(fi)), num(mode), num((double)off), num((double)len));
}
#undef OP

/*
 * Answered with replyWrite (fuse_reply_write: the bytes copied). The kernel
 * has checked the handles' modes, the flags and same-file overlap, flushed
 * its own cached pages of both ranges and holds the destination's inode lock
 * meanwhile; it drops the destination's pages of the range afterwards.
 */
#define OP OP_COPY_FILE_RANGE
static void ll_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, struct fuse_file_info *fi_in, fuse_ino_t ino_out,
                               off_t off_out, struct fuse_file_info *fi_out, size_t len, int flags) {
  ARGS(num((double)ino_in), num(FH(fi_in)), num((double)off_in), num((double)ino_out), num(FH(fi_out)), num((double)off_out),
       num((double)len), num(flags));
}
#undef OP

/*
 * lseek(ino, fh, off, whence): the kernel sends only SEEK_DATA and SEEK_HOLE
 * (it answers SEEK_SET/CUR/END itself); answered with replyLseek.
 */
#define OP OP_LSEEK
static void ll_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi) {
  ARGS(num((double)ino), num(FH(fi)), num((double)off), num(whence));
}
#undef OP

/*
 * Locks (client/locks.ts keeps them in meta's lock table, cluster-wide).
 * Ranges travel as (start, end) with end inclusive, -1 for "to the end of
 * the file" (l_len 0). A waiting setlk or flock can last until another mount
 * lets go, so it is interruptible: when the kernel sends FUSE_INTERRUPT (the
 * waiting process got a signal, SIGKILL included) JS hears
 * dispatch(OP_INTERRUPT, -1, slot) and answers the wait with EINTR.
 */
static double lock_end(const struct flock *lk) {
  return lk->l_len == 0 ? -1.0 : (double)lk->l_start + (double)lk->l_len - 1.0;
}

/*
 * On the JS thread, from fuse_session_process_buf (or at once from
 * fuse_req_interrupt_func when the interrupt came first). The request is
 * still parked: JS answers no request before this op's handler returned
 * (promise jobs run when the poll callback's scope closes).
 */
static void on_interrupt(fuse_req_t req, void *data) {
  uint32_t slot = (uint32_t)(uintptr_t)data;
  if (slot >= nslots || slots[slot] != req) return; /* answered meanwhile */
  napi_value a[] = { num((double)slot) };
  call(NULL, OP_INTERRUPT, 1, a);
}

static void interruptible(fuse_req_t req, int64_t slot) {
  if (slot >= 0 && (uint64_t)slot < nslots && slots[slot] == req) fuse_req_interrupt_func(req, on_interrupt, (void *)(uintptr_t)slot);
}

/* getlk(ino, fh, owner, type, start, end, pid): answered with replyLock */
#define OP OP_GETLK
static void ll_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lk) {
  ARGS(num((double)ino), num(FH(fi)), owner(fi->lock_owner), num(lk->l_type), num((double)lk->l_start), num(lock_end(lk)), num(lk->l_pid));
}
#undef OP

/* setlk(ino, fh, owner, type, start, end, pid, sleep) */
static void ll_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lk, int sleep) {
  napi_value a[] = { num((double)ino), num(FH(fi)), owner(fi->lock_owner), num(lk->l_type), num((double)lk->l_start), num(lock_end(lk)),
                     num(lk->l_pid), num(sleep) };
  int64_t slot = call(req, OP_SETLK, sizeof a / sizeof a[0], a);
  if (sleep) interruptible(req, slot);
}

/* flock(ino, fh, owner, op): op as flock(2), LOCK_SH/LOCK_EX/LOCK_UN with LOCK_NB */
static void ll_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op) {
  napi_value a[] = { num((double)ino), num(FH(fi)), owner(fi->lock_owner), num(op) };
  int64_t slot = call(req, OP_FLOCK, sizeof a / sizeof a[0], a);
  if (!(op & LOCK_NB)) interruptible(req, slot);
}

static const struct fuse_lowlevel_ops ops = {
  .init = ll_init, .lookup = ll_lookup, .forget = ll_forget, .forget_multi = ll_forget_multi,
  .getattr = ll_getattr, .setattr = ll_setattr, .readlink = ll_readlink, .mknod = ll_mknod,
  .mkdir = ll_mkdir, .unlink = ll_unlink, .rmdir = ll_rmdir, .symlink = ll_symlink,
  .rename = ll_rename, .link = ll_link, .open = ll_open, .read = ll_read, .write = ll_write,
  .flush = ll_flush, .release = ll_release, .fsync = ll_fsync, .opendir = ll_opendir,
  .readdir = ll_readdir, .readdirplus = ll_readdirplus, .releasedir = ll_releasedir, .fsyncdir = ll_fsyncdir,
  .statfs = ll_statfs, .setxattr = ll_setxattr, .getxattr = ll_getxattr,
  .listxattr = ll_listxattr, .removexattr = ll_removexattr, .create = ll_create,
  .fallocate = ll_fallocate, .copy_file_range = ll_copy_file_range, .lseek = ll_lseek,
  /* with these three libfuse asks the kernel for POSIX_LOCKS and FLOCK_LOCKS */
  .getlk = ll_getlk, .setlk = ll_setlk, .flock = ll_flock,
};

/*
 * ---- passthrough (docs/architecture.md, "Local copies and passthrough") ----
 *
 * libfuse 3.14 predates FUSE_PASSTHROUGH (kernel 6.9, protocol 7.40), so the
 * binding does the two protocol steps libfuse cannot express, in the one place
 * every reply passes: the session's writev (fuse_session_custom_io).
 * - INIT: when the kernel offers FUSE_PASSTHROUGH (init_in.flags2 bit 5) and
 *   the mount asked for it, the reply gets that bit and max_stack_depth 1 (a
 *   backing file must be on a file system that stacks on nothing, as ext4).
 * - OPEN: a reply that JS answered with a backing id (from backingOpen, the
 *   FUSE_DEV_IOC_BACKING_OPEN ioctl) gets FOPEN_PASSTHROUGH and that id, so
 *   the kernel reads the file from the backing file without asking us.
 * The struct layouts are the kernel's (include/uapi/linux/fuse.h), which
 * Debian 12's headers are too old to have.
 */
#define K_FUSE_INIT 26
#define K_INIT_EXT (1u << 30)
#define K_INIT2_PASSTHROUGH (1u << 5) /* FUSE_PASSTHROUGH = 1ULL << 37 */
#define K_FOPEN_PASSTHROUGH (1u << 7)
struct k_in_header { uint32_t len, opcode; uint64_t unique, nodeid; uint32_t uid, gid, pid; uint16_t total_extlen, padding; };
struct k_out_header { uint32_t len; int32_t error; uint64_t unique; };
struct k_backing_map { int32_t fd; uint32_t flags; uint64_t padding; };
#define K_DEV_IOC_BACKING_OPEN _IOW(229, 1, struct k_backing_map)
#define K_DEV_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)
/* fuse_init_in: major, minor, max_readahead, flags, flags2; fuse_init_out: flags2 at 32, max_stack_depth at 36 */
#define K_INIT_IN_FLAGS 12
#define K_INIT_IN_FLAGS2 16
#define K_INIT_OUT_FLAGS 12
#define K_INIT_OUT_FLAGS2 32
#define K_INIT_OUT_STACK 36
/* fuse_open_out: fh, open_flags at 8, backing_id at 12 */
#define K_OPEN_OUT_FLAGS 8
#define K_OPEN_OUT_BACKING 12

static uint32_t get32(const void *p, size_t off) { uint32_t v; memcpy(&v, (const char *)p + off, 4); return v; }
static void put32(void *p, size_t off, uint32_t v) { memcpy((char *)p + off, &v, 4); }

static ssize_t io_read(int fd, void *buf, size_t len, void *ud) {
  (void)ud;
  return read(fd, buf, len);
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *ud) {
  (void)ud;
  if (count >= 2 && iov[0].iov_len == sizeof(struct k_out_header)) {
    const struct k_out_header *h = iov[0].iov_base;
    /* only the JS thread replies to INIT and OPEN; the notifier's writes have unique 0 */
    if (h->unique != 0 && h->error == 0) {
      if (h->unique == S.init_unique && S.pt_on && iov[1].iov_len >= K_INIT_OUT_STACK + 4) {
        put32(iov[1].iov_base, K_INIT_OUT_FLAGS, get32(iov[1].iov_base, K_INIT_OUT_FLAGS) | K_INIT_EXT);
        put32(iov[1].iov_base, K_INIT_OUT_FLAGS2, get32(iov[1].iov_base, K_INIT_OUT_FLAGS2) | K_INIT2_PASSTHROUGH);
        put32(iov[1].iov_base, K_INIT_OUT_STACK, 1);
      } else if (h->unique == S.patch_unique && iov[1].iov_len >= K_OPEN_OUT_BACKING + 4) {
        put32(iov[1].iov_base, K_OPEN_OUT_FLAGS, get32(iov[1].iov_base, K_OPEN_OUT_FLAGS) | K_FOPEN_PASSTHROUGH);
        put32(iov[1].iov_base, K_OPEN_OUT_BACKING, (uint32_t)S.patch_backing);
      }
    }
  }
  return writev(fd, iov, count);
}

static const struct fuse_custom_io custom_io = { .writev = io_writev, .read = io_read };

/* Before libfuse dispatches a request: its unique, and INIT's offer. */
static void note_request(const struct fuse_buf *b) {
  if (b->flags & FUSE_BUF_IS_FD || b->size < sizeof(struct k_in_header)) return;
  const struct k_in_header *in = b->mem;
  S.cur_unique = in->unique;
  if (in->opcode == K_FUSE_INIT && b->size >= sizeof *in + K_INIT_IN_FLAGS2 + 4) {
    const char *arg = (const char *)b->mem + sizeof *in;
    S.init_unique = in->unique;
    S.pt_on = S.passthrough && (get32(arg, K_INIT_IN_FLAGS) & K_INIT_EXT) && (get32(arg, K_INIT_IN_FLAGS2) & K_INIT2_PASSTHROUGH);
  }
}

/* ---- the poll loop ---- */

static void stop_polling(void) {
  if (S.polling) {
    uv_poll_stop(&S.poll);
    S.polling = 0;
  }
}

/* Requests handled per wake-up before the loop gets a turn (timers, NATS, replies). */
#define BATCH 64

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)h; (void)events;
  napi_env env = S.env;
  napi_handle_scope hs;
  napi_callback_scope cs;
  napi_value resource;
  napi_open_handle_scope(env, &hs);
  napi_get_reference_value(env, S.resource, &resource);
  /* a callback scope: promise jobs and nextTicks run when it closes */
  napi_open_callback_scope(env, resource, S.actx, &cs);
  int ended = status < 0;
  for (int i = 0; i < BATCH && !ended; i++) {
    int res = fuse_session_receive_buf(S.se, &S.buf);
    if (res == -EAGAIN) break;
    if (res == -EINTR) continue;
    if (res <= 0 || fuse_session_exited(S.se)) {
      ended = 1; /* ENODEV: unmounted (fusermount -u, umount) */
      break;
    }
    note_request(&S.buf);
    fuse_session_process_buf(S.se, &S.buf);
    S.cur_unique = 0;
  }
  if (ended) {
    stop_polling();
    napi_value fn, global, ignored;
    napi_get_reference_value(env, S.on_exit, &fn);
    napi_get_global(env, &global);
    if (napi_call_function(env, global, fn, 0, NULL, &ignored) != napi_ok) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
    }
  }
  napi_close_callback_scope(env, cs);
  napi_close_handle_scope(env, hs);
}

/* ---- notifier thread ---- */

struct note {
  struct note *next;
  fuse_ino_t ino;  /* inval_inode of ino, or, with a name, inval_entry(ino, name) */
  int ack;         /* tell JS (on_ack(ino)) once the kernel has done it */
  off_t off, len;  /* inval_inode: the page range (0, 0: all pages) */
  size_t namelen;
  char name[];
};

static struct {
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct note *head, *tail;
  int running, stop;
  uv_async_t async;    /* wakes the JS thread for acks */
  int async_open;
  fuse_ino_t *acks;    /* inodes done, waiting for the JS thread */
  size_t nacks, cap;
} N = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void *notifier(void *arg) {
  (void)arg;
  pthread_mutex_lock(&N.lock);
  for (;;) {
    while (!N.head && !N.stop) pthread_cond_wait(&N.cond, &N.lock);
    if (!N.head) break; /* stopping and drained */
    struct note *n = N.head;
    N.head = n->next;
    if (!N.head) N.tail = NULL;
    pthread_mutex_unlock(&N.lock);
    /* -ENOENT (the kernel does not know it) and -ENOSYS are fine: nothing cached */
    if (n->namelen) fuse_lowlevel_notify_inval_entry(S.se, n->ino, n->name, n->namelen);
    else fuse_lowlevel_notify_inval_inode(S.se, n->ino, n->off, n->len);
    int ack = n->ack;
    fuse_ino_t ino = n->ino;
    free(n);
    pthread_mutex_lock(&N.lock);
    if (ack) {
      if (N.nacks == N.cap) {
        size_t cap = N.cap ? N.cap * 2 : 64;
        fuse_ino_t *a = realloc(N.acks, cap * sizeof *a);
        if (a) { N.acks = a; N.cap = cap; }
      }
      if (N.nacks < N.cap) N.acks[N.nacks++] = ino;
      uv_async_send(&N.async);
    }
  }
  pthread_mutex_unlock(&N.lock);
  return NULL;
}

static void notify(fuse_ino_t ino, const char *name, size_t namelen, int ack, off_t off, off_t len) {
  struct note *n = malloc(sizeof *n + namelen + 1);
  if (!n) return;
  n->next = NULL;
  n->ino = ino;
  n->ack = ack;
  n->off = off;
  n->len = len;
  n->namelen = namelen;
  memcpy(n->name, name, namelen);
  n->name[namelen] = 0;
  pthread_mutex_lock(&N.lock);
  if (N.running && !N.stop) {
    if (N.tail) N.tail->next = n; else N.head = n;
    N.tail = n;
    n = NULL;
    pthread_cond_signal(&N.cond);
  }
  pthread_mutex_unlock(&N.lock);
  free(n);
}

static void stop_notifier(void) {
  if (!N.running) return;
  pthread_mutex_lock(&N.lock);
  N.stop = 1;
  /* an unmounted session answers nothing: drop what is queued */
  while (N.head) {
    struct note *n = N.head;
    N.head = n->next;
    free(n);
  }
  N.tail = NULL;
  pthread_cond_signal(&N.cond);
  pthread_mutex_unlock(&N.lock);
  pthread_join(N.thread, NULL);
  N.running = 0;
  N.stop = 0;
}

/* On the JS thread: on_ack(ino) for every acknowledged invalidation. */
static void on_acks(uv_async_t *h) {
  (void)h;
  pthread_mutex_lock(&N.lock);
  size_t n = N.nacks;
  fuse_ino_t *inos = n ? malloc(n * sizeof *inos) : NULL;
  if (inos) memcpy(inos, N.acks, n * sizeof *inos);
  N.nacks = 0;
  pthread_mutex_unlock(&N.lock);
  if (!inos || !S.on_ack) { free(inos); return; }
  napi_env env = S.env;
  napi_handle_scope hs;
  napi_callback_scope cs;
  napi_value resource, fn, global, ignored;
  napi_open_handle_scope(env, &hs);
  napi_get_reference_value(env, S.resource, &resource);
  napi_open_callback_scope(env, resource, S.actx, &cs);
  napi_get_reference_value(env, S.on_ack, &fn);
  napi_get_global(env, &global);
  for (size_t i = 0; i < n; i++) {
    napi_value arg = num((double)inos[i]);
    if (napi_call_function(env, global, fn, 1, &arg, &ignored) != napi_ok) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
    }
  }
  napi_close_callback_scope(env, cs);
  napi_close_handle_scope(env, hs);
  free(inos);
}

/* ---- exported functions ---- */

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "too few arguments");
    return 0;
  }
  return 1;
}

static double arg_num(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

/* A UTF-8 string argument into a malloc'd C string (caller frees). */
static char *arg_str(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (s) napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

static void unmount_session(void) {
  if (!S.se) return;
  stop_polling();
  /* Requests JS has not answered die with the session: answer them now (this
     frees them), so a late reply from JS finds an empty slot, not freed memory.
     First, because a notify in the notifier thread may wait for one of them. */
  for (uint32_t i = 0; i < nslots; i++) {
    fuse_req_t req = unpark(i);
    if (req) fuse_reply_err(req, EIO);
  }
  stop_notifier();
  free(N.acks);
  N.acks = NULL;
  N.nacks = N.cap = 0;
  free(slots);
  free(free_slots);
  slots = NULL;
  free_slots = NULL;
  nslots = nfree = 0;
  if (S.mounted) fuse_session_unmount(S.se);
  S.mounted = 0;
  fuse_session_destroy(S.se);
  S.se = NULL;
  free(S.buf.mem);
  memset(&S.buf, 0, sizeof S.buf);
}

/* mount(mountpoint, options "a,b=c", maxWrite, dispatch, onExit, onAck, flags: 1 = local locks, 2 = POSIX ACLs) */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!get_args(env, info, 7, argv)) return NULL;
  if (S.se) {
    napi_throw_error(env, "EBUSY", "a session is already mounted in this process");
    return NULL;
  }
  char *mnt = arg_str(env, argv[0]);
  char *opts = arg_str(env, argv[1]);
  S.max_write = (unsigned)arg_num(env, argv[2]);
  S.local_locks = (int)arg_num(env, argv[6]) & 1;
  S.acl = ((int)arg_num(env, argv[6]) & 2) != 0;
  S.acl_on = 0;
  S.passthrough = ((int)arg_num(env, argv[6]) & 4) != 0;
  S.pt_on = 0;
  S.init_unique = S.patch_unique = 0;
  acl_reset();
  const char *max = getenv("BERTH_ACL_TABLE_MAX");
  acl_table_max = max && *max ? (size_t)strtoull(max, NULL, 10) : ACL_TABLE_MAX;
  char *fargv[] = { "berth", "-o", opts, NULL };
  struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
  S.env = env;
  S.se = fuse_session_new(&args, &ops, sizeof ops, NULL);
  fuse_opt_free_args(&args);
  free(opts);
  if (!S.se) {
    free(mnt);
    napi_throw_error(env, "EINVAL", "fuse_session_new failed (bad options?)");
    return NULL;
  }
  if (fuse_session_mount(S.se, mnt) != 0) {
    free(mnt);
    fuse_session_destroy(S.se);
    S.se = NULL;
    napi_throw_error(env, "EIO", "fuse_session_mount failed");
    return NULL;
  }
  free(mnt);
  S.mounted = 1;
  int fd = fuse_session_fd(S.se);
  /* every read and reply through io_read/io_writev (the passthrough bits above); same fd */
  if (fuse_session_custom_io(S.se, &custom_io, fd) != 0) S.passthrough = 0;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  napi_value resource, name;
  CHECK(napi_create_reference(env, argv[3], 1, &S.dispatch));
  CHECK(napi_create_reference(env, argv[4], 1, &S.on_exit));
  CHECK(napi_create_reference(env, argv[5], 1, &S.on_ack));
  CHECK(napi_create_object(env, &resource));
  CHECK(napi_create_reference(env, resource, 1, &S.resource));
  CHECK(napi_create_string_utf8(env, "berth-fuse", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, resource, name, &S.actx));
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  uv_poll_init(loop, &S.poll, fd);
  uv_poll_start(&S.poll, UV_READABLE, on_readable);
  S.polling = 1;
  if (!N.async_open) N.async_open = uv_async_init(loop, &N.async, on_acks) == 0;
  if (N.async_open) uv_unref((uv_handle_t *)&N.async); /* never keeps the process alive */
  N.running = pthread_create(&N.thread, NULL, notifier, NULL) == 0;
  return NULL;
}

/* unmount(): stops polling, unmounts (if still mounted), frees the session. Safe twice. */
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  (void)info;
  unmount_session();
  if (S.dispatch) { napi_delete_reference(env, S.dispatch); S.dispatch = NULL; }
  if (S.on_exit) { napi_delete_reference(env, S.on_exit); S.on_exit = NULL; }
  if (S.on_ack) { napi_delete_reference(env, S.on_ack); S.on_ack = NULL; }
  if (S.actx) { napi_async_destroy(env, S.actx); S.actx = NULL; }
  if (S.resource) { napi_delete_reference(env, S.resource); S.resource = NULL; }
  return NULL;
}

/* The request parked in a slot, taken out. After unmount a late reply is dropped silently. */
static fuse_req_t arg_req(napi_env env, napi_value v) {
  fuse_req_t req = unpark((uint32_t)arg_num(env, v));
  if (!req && S.se) napi_throw_error(env, "EINVAL", "no pending request in this slot");
  return req;
}

/*
 * Which inodes have POSIX ACLs, as the attributes last handed to the kernel
 * say (A_ACL: bit 1 access, bit 2 default; common/acl.ts). With ACLs on, the
 * kernel asks for system.posix_acl_access of every inode it checks or `ls -l`
 * lists, and nearly all have none: ll_getxattr answers those here (ENODATA),
 * which keeps `ls -l` of 5,000 files from taking twice as long. The answer is
 * as fresh as the inode's attributes in the kernel: the kernel refreshes
 * stale attributes before a permission check, an invalidation marks the inode
 * unknown (ACL_UNKNOWN: ask JS) until its next attributes, and so does an ACL
 * set or removed through this mount. A FORGET drops an unknown mark (the
 * kernel's next use of the inode starts with a lookup, attributes included),
 * so marks are bounded by the kernel's inode cache and exact bits by the
 * inodes that have ACLs. A chained hash of the inodes with bits.
 */
struct acl_ino { uint64_t ino; int bits; struct acl_ino *next; };
static struct acl_ino **acl_tab;
static size_t acl_buckets, acl_count;

/* The chain `ino` belongs to (Fibonacci hashing: inode numbers come in runs). */
static struct acl_ino **acl_chain(uint64_t ino) {
  return &acl_tab[(ino * 0x9E3779B97F4A7C15ull) >> 32 & (acl_buckets - 1)];
}

static struct acl_ino **acl_slot(uint64_t ino) {
  struct acl_ino **p = acl_chain(ino);
  while (*p && (*p)->ino != ino) p = &(*p)->next;
  return p;
}

static void acl_note(uint64_t ino, int bits) {
  if (S.acl_all_to_js) return;
  if (!acl_tab) {
    if (!bits) return;
    acl_tab = calloc(1024, sizeof *acl_tab);
    if (!acl_tab) {
      S.acl_all_to_js = 1;
      return;
    }
    acl_buckets = 1024;
  }
  struct acl_ino **p = acl_slot(ino);
  if (*p) {
    if (bits) (*p)->bits = bits;
    else {
      struct acl_ino *gone = *p;
      *p = gone->next;
      free(gone);
      acl_count--;
    }
    return;
  }
  if (!bits) return;
  if (acl_count >= acl_table_max) {
    acl_reset();
    S.acl_all_to_js = 1;
    return;
  }
  if (acl_count >= acl_buckets * 2) {
    struct acl_ino **grown = calloc(acl_buckets * 2, sizeof *grown);
    if (grown) {
      struct acl_ino **old = acl_tab;
      size_t n = acl_buckets;
      acl_tab = grown;
      acl_buckets *= 2;
      for (size_t i = 0; i < n; i++)
        for (struct acl_ino *e = old[i], *next; e; e = next) {
          next = e->next;
          struct acl_ino **q = acl_chain(e->ino);
          e->next = *q;
          *q = e;
        }
      free(old);
      p = acl_slot(ino);
    }
  }
  struct acl_ino *e = malloc(sizeof *e);
  if (!e) {
    /* no memory to remember it: nothing is answered here for any inode */
    acl_reset();
    S.acl_all_to_js = 1;
    return;
  }
  e->ino = ino;
  e->bits = bits;
  e->next = NULL;
  *p = e;
  acl_count++;
}

/* A new session: nothing known. */
static void acl_reset(void) {
  for (size_t i = 0; i < acl_buckets; i++)
    for (struct acl_ino *e = acl_tab[i], *next; e; e = next) {
      next = e->next;
      free(e);
    }
  free(acl_tab);
  acl_tab = NULL;
  acl_buckets = acl_count = 0;
  S.acl_all_to_js = 0;
}

/* The kernel dropped the inode: an unknown mark goes (exact bits stay: a FORGET may also name an inode it still holds). */
static void acl_forget(uint64_t ino) {
  if (!acl_tab) return;
  struct acl_ino **p = acl_slot(ino);
  if (*p && ((*p)->bits & ACL_UNKNOWN)) acl_note(ino, 0);
}

static int acl_bits(uint64_t ino) {
  if (S.acl_all_to_js) return ACL_UNKNOWN;
  if (!acl_tab) return 0;
  struct acl_ino *e = *acl_slot(ino);
  return e ? e->bits : 0;
}

/* The ACL bit an xattr name is, or 0 for any other name. */
static int acl_name_bit(const char *name) {
  if (strcmp(name, "system.posix_acl_access") == 0) return 1;
  if (strcmp(name, "system.posix_acl_default") == 0) return 2;
  return 0;
}

static void attr_from(const double *a, struct stat *st) {
  memset(st, 0, sizeof *st);
  if (S.acl_on) acl_note((uint64_t)a[A_INO], (int)a[A_ACL] & 3);
  st->st_ino = (ino_t)a[A_INO];
  st->st_mode = (mode_t)a[A_MODE];
  st->st_nlink = (nlink_t)a[A_NLINK];
  st->st_uid = (uid_t)a[A_UID];
  st->st_gid = (gid_t)a[A_GID];
  st->st_rdev = (dev_t)a[A_RDEV];
  st->st_size = (off_t)a[A_SIZE];
  st->st_blocks = (blkcnt_t)a[A_BLOCKS];
  st->st_atim.tv_sec = (time_t)a[A_ATIME];
  st->st_atim.tv_nsec = (long)a[A_ATIME_NS];
  st->st_mtim.tv_sec = (time_t)a[A_MTIME];
  st->st_mtim.tv_nsec = (long)a[A_MTIME_NS];
  st->st_ctim.tv_sec = (time_t)a[A_CTIME];
  st->st_ctim.tv_nsec = (long)a[A_CTIME_NS];
  st->st_blksize = (blksize_t)a[A_BLKSIZE];
}

static int arg_attr(napi_env env, napi_value v, struct stat *st) {
  napi_typedarray_type type;
  size_t len;
  void *data;
  if (napi_get_typedarray_info(env, v, &type, &len, &data, NULL, NULL) != napi_ok || type != napi_float64_array || len < A_FIELDS) return 0;
  attr_from(data, st);
  return 1;
}

static void fill_entry(struct fuse_entry_param *e, const struct stat *st, double entry_s, double attr_s) {
  memset(e, 0, sizeof *e);
  e->ino = st->st_ino;
  e->generation = 1;
  e->attr = *st;
  e->entry_timeout = entry_s;
  e->attr_timeout = attr_s;
}

/* Bits of replyOpen/replyCreate's `flags`. */
#define OPEN_DIRECT_IO 1
#define OPEN_KEEP_CACHE 2
#define OPEN_CACHE_DIR 4
#define OPEN_NO_FLUSH 8

static void fill_open(struct fuse_file_info *fi, double fh, int flags) {
  memset(fi, 0, sizeof *fi);
  fi->fh = (uint64_t)fh;
  fi->direct_io = !!(flags & OPEN_DIRECT_IO);
  fi->keep_cache = !!(flags & OPEN_KEEP_CACHE);
  fi->cache_readdir = !!(flags & OPEN_CACHE_DIR);
  fi->noflush = !!(flags & OPEN_NO_FLUSH);
}

/*
 * A reply of one number, (slot, n): `call` runs with `req` (the parked
 * request, if JS named a live one) and `n`.
 */
#define REPLY_WITH_NUMBER(name, call)                                   \
  static napi_value name(napi_env env, napi_callback_info info) {       \
    napi_value argv[2];                                                 \
    if (!get_args(env, info, 2, argv)) return NULL;                     \
    fuse_req_t req = arg_req(env, argv[0]);                             \
    double n = arg_num(env, argv[1]);                                   \
    if (req) call;                                                      \
    return NULL;                                                        \
  }

/* replyErr(slot, errno): 0 is success for ops without a result. */
REPLY_WITH_NUMBER(js_reply_err, fuse_reply_err(req, (int)n))

/* replyEntry(slot, attr, entryTimeout, attrTimeout) */
static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  struct stat st;
  struct fuse_entry_param e;
  if (!get_args(env, info, 4, argv)) return NULL;
  if (!arg_attr(env, argv[1], &st)) return napi_throw_type_error(env, NULL, "attr: Float64Array expected"), NULL;
  fuse_req_t req = arg_req(env, argv[0]);
  if (!req) return NULL;
  fill_entry(&e, &st, arg_num(env, argv[2]), arg_num(env, argv[3]));
  fuse_reply_entry(req, &e);
  return NULL;
}

/* replyCreate(slot, attr, entryTimeout, attrTimeout, fh, flags) */
static napi_value js_reply_create(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  struct stat st;
  struct fuse_entry_param e;
  struct fuse_file_info fi;
  if (!get_args(env, info, 6, argv)) return NULL;
  if (!arg_attr(env, argv[1], &st)) return napi_throw_type_error(env, NULL, "attr: Float64Array expected"), NULL;
  fuse_req_t req = arg_req(env, argv[0]);
  if (!req) return NULL;
  fill_entry(&e, &st, arg_num(env, argv[2]), arg_num(env, argv[3]));
  fill_open(&fi, arg_num(env, argv[4]), (int)arg_num(env, argv[5]));
  /* -ENOENT: the caller was interrupted; libfuse then sends no release, so JS must */
  napi_value out;
  napi_get_boolean(env, fuse_reply_create(req, &e, &fi) == 0, &out);
  return out;
}

/* replyAttr(slot, attr, timeout) */
static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  struct stat st;
  if (!get_args(env, info, 3, argv)) return NULL;
  if (!arg_attr(env, argv[1], &st)) return napi_throw_type_error(env, NULL, "attr: Float64Array expected"), NULL;
  fuse_req_t req = arg_req(env, argv[0]);
  if (req) fuse_reply_attr(req, &st, arg_num(env, argv[2]));
  return NULL;
}

/* replyOpen(slot, fh, flags) -> false if the opener is gone (no release will come) */
static napi_value js_reply_open(napi_env env, napi_callback_info info) {
  napi_value argv[5], out;
  struct fuse_file_info fi;
  size_t argc = 5;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3) return napi_throw_type_error(env, NULL, "replyOpen(slot, fh, flags[, backingId, unique])"), NULL;
  fuse_req_t req = arg_req(env, argv[0]);
  if (!req) return NULL;
  fill_open(&fi, arg_num(env, argv[1]), (int)arg_num(env, argv[2]));
  double backing = argc >= 5 ? arg_num(env, argv[3]) : 0;
  if (backing > 0 && S.pt_on) {
    /* io_writev puts FOPEN_PASSTHROUGH and the id into this very reply */
    S.patch_unique = (uint64_t)arg_num(env, argv[4]);
    S.patch_backing = (int32_t)backing;
  }
  int ok = fuse_reply_open(req, &fi) == 0;
  S.patch_unique = 0;
  napi_get_boolean(env, ok, &out);
  return out;
}

/* passthroughGranted() -> boolean: asked for, and the kernel offered it at INIT */
static napi_value js_pt_granted(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_get_boolean(env, S.pt_on != 0, &out);
  return out;
}

/* backingOpen(fd) -> id: registers an open file as a backing file (needs CAP_SYS_ADMIN); throws errno */
static napi_value js_backing_open(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (!S.se || !S.pt_on) return napi_throw_error(env, "ENOSYS", "passthrough is off"), NULL;
  struct k_backing_map map = { .fd = (int32_t)arg_num(env, argv[0]) };
  int id = ioctl(fuse_session_fd(S.se), K_DEV_IOC_BACKING_OPEN, &map);
  if (id < 0) {
    char msg[96];
    snprintf(msg, sizeof msg, "FUSE_DEV_IOC_BACKING_OPEN: %s", strerror(errno));
    napi_value code, m, err;
    napi_create_string_utf8(env, errno == EPERM ? "EPERM" : errno == EINVAL ? "EINVAL" : "EIO", NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
    napi_create_error(env, code, m, &err);
    napi_throw(env, err);
    return NULL;
  }
  napi_create_double(env, id, &out);
  return out;
}

/* backingClose(id): the kernel keeps the backing file of every file already opened on it */
static napi_value js_backing_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  uint32_t id = (uint32_t)arg_num(env, argv[0]);
  if (S.se) (void)ioctl(fuse_session_fd(S.se), K_DEV_IOC_BACKING_CLOSE, &id);
  return NULL;
}

/* replyBuf(slot, buffer, length): the bytes are written to the kernel before this returns */
static napi_value js_reply_buf(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  void *data = NULL;
  size_t len = 0;
  if (!get_args(env, info, 3, argv)) return NULL;
  if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) return napi_throw_type_error(env, NULL, "buffer expected"), NULL;
  double n = arg_num(env, argv[2]);
  if (n >= 0 && n < (double)len) len = (size_t)n;
  fuse_req_t req = arg_req(env, argv[0]);
  if (req) fuse_reply_buf(req, data, len);
  return NULL;
}

/* replyLseek(slot, offset) */
REPLY_WITH_NUMBER(js_reply_lseek, fuse_reply_lseek(req, (off_t)n))

/* replyWrite(slot, count) */
REPLY_WITH_NUMBER(js_reply_write, fuse_reply_write(req, (size_t)n))

/* replyLock(slot, type, start, end, pid): F_GETLK's answer; type F_UNLCK when nothing conflicts, end -1 = to EOF */
static napi_value js_reply_lock(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv)) return NULL;
  struct flock lk;
  memset(&lk, 0, sizeof lk);
  lk.l_type = (short)arg_num(env, argv[1]);
  lk.l_whence = SEEK_SET;
  lk.l_start = (off_t)arg_num(env, argv[2]);
  double end = arg_num(env, argv[3]);
  lk.l_len = end < 0 ? 0 : (off_t)(end - arg_num(env, argv[2]) + 1);
  lk.l_pid = (pid_t)arg_num(env, argv[4]);
  fuse_req_t req = arg_req(env, argv[0]);
  if (req) fuse_reply_lock(req, &lk);
  return NULL;
}

/* replyReadlink(slot, target) */
static napi_value js_reply_readlink(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  char *target = arg_str(env, argv[1]);
  if (target) name_raw(target);
  fuse_req_t req = arg_req(env, argv[0]);
  if (req) {
    if (target) fuse_reply_readlink(req, target);
    else fuse_reply_err(req, ENOMEM);
  }
  free(target);
  return NULL;
}

/* replyStatfs(slot, Float64Array [bsize, frsize, blocks, bfree, bavail, files, ffree, favail, namemax]) */
static napi_value js_reply_statfs(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  napi_typedarray_type type;
  size_t len;
  void *data;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (napi_get_typedarray_info(env, argv[1], &type, &len, &data, NULL, NULL) != napi_ok || type != napi_float64_array || len < 9)
    return napi_throw_type_error(env, NULL, "Float64Array(9) expected"), NULL;
  const double *a = data;
  struct statvfs sv = {
    .f_bsize = (unsigned long)a[0], .f_frsize = (unsigned long)a[1], .f_blocks = (fsblkcnt_t)a[2],
    .f_bfree = (fsblkcnt_t)a[3], .f_bavail = (fsblkcnt_t)a[4], .f_files = (fsfilcnt_t)a[5],
    .f_ffree = (fsfilcnt_t)a[6], .f_favail = (fsfilcnt_t)a[7], .f_namemax = (unsigned long)a[8],
  };
  fuse_req_t req = arg_req(env, argv[0]);
  if (req) fuse_reply_statfs(req, &sv);
  return NULL;
}

/* replyXattr(slot, size): the answer to a size probe (getxattr/listxattr with size 0) */
REPLY_WITH_NUMBER(js_reply_xattr, fuse_reply_xattr(req, (size_t)n))

/*
 * replyDir(slot, size, plus, names[], attrs Float64Array(n * A_FIELDS), offsets Float64Array(n),
 *          entryTimeout, attrTimeout) -> how many entries fit. With `plus`, every
 * entry that fit except "." and ".." counts as a lookup for the kernel.
 */
static napi_value js_reply_dir(napi_env env, napi_callback_info info) {
  napi_value argv[8], out;
  if (!get_args(env, info, 8, argv)) return NULL;
  size_t size = (size_t)arg_num(env, argv[1]);
  int plus = arg_num(env, argv[2]) != 0;
  uint32_t n = 0;
  napi_get_array_length(env, argv[3], &n);
  napi_typedarray_type type;
  size_t alen, olen;
  void *adata, *odata;
  if (napi_get_typedarray_info(env, argv[4], &type, &alen, &adata, NULL, NULL) != napi_ok || type != napi_float64_array || alen < (size_t)n * A_FIELDS ||
      napi_get_typedarray_info(env, argv[5], &type, &olen, &odata, NULL, NULL) != napi_ok || type != napi_float64_array || olen < n)
    return napi_throw_type_error(env, NULL, "attrs/offsets: Float64Array expected"), NULL;
  double entry_s = arg_num(env, argv[6]), attr_s = arg_num(env, argv[7]);
  fuse_req_t req = arg_req(env, argv[0]);
  if (!req) return NULL;
  char *buf = malloc(size ? size : 1);
  if (!buf) {
    fuse_reply_err(req, ENOMEM);
    return NULL;
  }
  size_t used = 0;
  uint32_t fit = 0;
  for (; fit < n; fit++) {
    napi_value v;
    napi_get_element(env, argv[3], fit, &v);
    char *name = arg_str(env, v);
    if (!name) break;
    name_raw(name);
    struct stat st;
    attr_from((const double *)adata + (size_t)fit * A_FIELDS, &st);
    off_t next = (off_t)((const double *)odata)[fit];
    size_t need;
    if (plus) {
      struct fuse_entry_param e;
      int dots = strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
      fill_entry(&e, &st, entry_s, attr_s);
      /* "." and "..": no lookup is counted, so no entry is given (ino 0 = d_ino only) */
      if (dots) {
        e.ino = 0;
        e.attr.st_ino = st.st_ino;
      }
      need = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, next);
    } else {
      need = fuse_add_direntry(req, buf + used, size - used, name, &st, next);
    }
    free(name);
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf, used);
  free(buf);
  napi_create_uint32(env, fit, &out);
  return out;
}

/*
 * notifyInvalInode(ino, ack) / notifyInvalEntry(parent, name): queued to the
 * notifier thread; with `ack`, onAck(ino) follows once the kernel did it.
 */
static napi_value js_inval_inode(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  fuse_ino_t ino = (fuse_ino_t)arg_num(env, argv[0]);
  if (S.acl_on) acl_note(ino, ACL_UNKNOWN); /* changed elsewhere: unknown until its next attributes */
  if (S.se) notify(ino, "", 0, arg_num(env, argv[1]) != 0, 0, 0);
  return NULL;
}

/*
 * notifyInvalRange(ino, off, len): the kernel drops its cached pages of
 * [off, off + len) (len 0: to the end) and its attributes of ino, on the
 * notifier thread. Passthrough drops the pages of a file whose local copy
 * holds the same bytes (client/passthrough.ts): the kernel refuses
 * FOPEN_KEEP_CACHE with passthrough, so an open in passthrough mode would
 * otherwise drop them itself, in the opener's open(2).
 */
static napi_value js_inval_range(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  fuse_ino_t ino = (fuse_ino_t)arg_num(env, argv[0]);
  double off = arg_num(env, argv[1]), len = arg_num(env, argv[2]);
  if (off < 0 || len < 0) return NULL;
  if (S.acl_on) acl_note(ino, ACL_UNKNOWN); /* the kernel forgets its cached ACLs too */
  if (S.se) notify(ino, "", 0, 0, (off_t)off, (off_t)len);
  return NULL;
}

static napi_value js_inval_entry(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  char *name = arg_str(env, argv[1]);
  if (name && *name && S.se) notify((fuse_ino_t)arg_num(env, argv[0]), name, name_raw(name), 0, 0, 0);
  free(name);
  return NULL;
}

/* aclGranted() -> boolean: the kernel took FUSE_CAP_POSIX_ACL at INIT (every request comes after INIT) */
static napi_value js_acl_granted(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_get_boolean(env, S.acl_on != 0, &out);
  return out;
}

/* rawName(name) -> Buffer: the kernel's bytes of a name JS holds (listxattr's list) */
static napi_value js_raw_name(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  void *data;
  if (!get_args(env, info, 1, argv)) return NULL;
  char *name = arg_str(env, argv[0]);
  if (!name) return napi_throw_type_error(env, NULL, "string expected"), NULL;
  size_t n = name_raw(name);
  napi_create_buffer_copy(env, n, name, &data, &out);
  free(name);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
#define FN(name, fn) { name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL }
    FN("mount", js_mount), FN("unmount", js_unmount), FN("replyErr", js_reply_err),
    FN("replyEntry", js_reply_entry), FN("replyCreate", js_reply_create), FN("replyAttr", js_reply_attr),
    FN("replyOpen", js_reply_open), FN("replyBuf", js_reply_buf), FN("replyWrite", js_reply_write),
    FN("replyReadlink", js_reply_readlink), FN("replyStatfs", js_reply_statfs), FN("replyXattr", js_reply_xattr),
    FN("replyDir", js_reply_dir), FN("notifyInvalInode", js_inval_inode), FN("notifyInvalRange", js_inval_range), FN("notifyInvalEntry", js_inval_entry),
    FN("replyLock", js_reply_lock), FN("replyLseek", js_reply_lseek), FN("rawName", js_raw_name),
    FN("aclGranted", js_acl_granted), FN("passthroughGranted", js_pt_granted),
    FN("backingOpen", js_backing_open), FN("backingClose", js_backing_close),
#undef FN
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
