/**
 * Errors that cross a process boundary carry a stable errno-style `code`.
 * Meta handlers throw `fsError('ENOENT', ...)`, the reply envelope carries
 * `{ ok: false, code, message }`, and the receiving side rethrows a BerthError
 * with the same code. Nobody matches on message text.
 *
 * The table of codes lives in docs/errors.md.
 */

/** POSIX errno names berth uses, with their Linux numbers (FUSE wants negatives). */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  EROFS: 30,
  EMLINK: 31,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOLCK: 37,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  EPROTO: 71,
  EOVERFLOW: 75,
  EMSGSIZE: 90,
  ENOTSUP: 95,
  ETIMEDOUT: 110,
  ESTALE: 116,
} as const

export type ErrnoCode = keyof typeof ERRNO

/** Codes that are not errnos: protocol-level failures. */
export const PROTOCOL_CODES = {
  /** Request body was not valid msgpack or had the wrong shape. */
  EBADMSG: 'EBADMSG',
  /** A second metadata service found another one already serving the cluster. */
  ECONFLICT: 'ECONFLICT',
  /** Hash of a block body does not match its name. */
  EHASH: 'EHASH',
  /** Missing or wrong cluster token. */
  EAUTH: 'EAUTH',
} as const

export type ProtocolCode = keyof typeof PROTOCOL_CODES
export type ErrorCode = ErrnoCode | ProtocolCode

export class BerthError extends Error {
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = 'BerthError'
  }
}

/**
 * An errno answer (ENOENT, EEXIST, ...). Without a stack trace, except EIO:
 * these are answers, never logged with a stack, and capturing one cost tens
 * of microseconds on every lookup of a name about to be created (profile of a
 * mount creating files, docs/bench.md "Metadata latency").
 */
export function fsError(code: ErrorCode, message: string): BerthError {
  if (code === 'EIO') return new BerthError(code, message)
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return new BerthError(code, message)
  } finally {
    Error.stackTraceLimit = limit
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (value in ERRNO || value in PROTOCOL_CODES)
}

/** The negative errno FUSE expects; anything unknown becomes EIO. */
export function toErrno(err: unknown): number {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && code in ERRNO) return -ERRNO[code as ErrnoCode]
  if (code === 'EBADMSG' || code === 'EHASH') return -ERRNO.EIO
  if (code === 'EAUTH') return -ERRNO.EACCES
  return -ERRNO.EIO
}

/** Error code for a reply, whatever was thrown. Unknown errors become EIO. */
export function codeOf(err: unknown): ErrorCode {
  const code = (err as { code?: unknown } | null)?.code
  return isErrorCode(code) ? code : 'EIO'
}
