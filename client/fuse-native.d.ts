/** The subset of fuse-native (untyped CommonJS) berth uses. */
declare module 'fuse-native' {
  type Cb<T = void> = T extends void ? (err: number) => void : (err: number, value?: T) => void
  export interface FuseStat {
    mode: number
    uid: number
    gid: number
    size: number
    dev?: number
    nlink: number
    ino: number
    rdev: number
    blksize: number
    blocks: number
    atime: number
    mtime: number
    ctime: number
  }
  export interface FuseStatfs {
    bsize: number
    frsize: number
    blocks: number
    bfree: number
    bavail: number
    files: number
    ffree: number
    favail: number
    fsid: number
    flag: number
    namemax: number
  }
  export interface FuseOps {
    init?(cb: (err: number) => void): void
    getattr?(path: string, cb: (err: number, stat?: FuseStat) => void): void
    fgetattr?(path: string, fd: number, cb: (err: number, stat?: FuseStat) => void): void
    access?(path: string, mode: number, cb: (err: number) => void): void
    statfs?(path: string, cb: (err: number, s?: FuseStatfs) => void): void
    readdir?(path: string, cb: (err: number, names?: string[], stats?: FuseStat[]) => void): void
    open?(path: string, flags: number, cb: (err: number, fd?: number) => void): void
    create?(path: string, mode: number, cb: (err: number, fd?: number) => void): void
    read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void): void
    write?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void): void
    flush?(path: string, fd: number, cb: (err: number) => void): void
    fsync?(path: string, datasync: number, fd: number, cb: (err: number) => void): void
    release?(path: string, fd: number, cb: (err: number) => void): void
    truncate?(path: string, size: number, cb: (err: number) => void): void
    ftruncate?(path: string, fd: number, size: number, cb: (err: number) => void): void
    readlink?(path: string, cb: (err: number, target?: string) => void): void
    chown?(path: string, uid: number, gid: number, cb: (err: number) => void): void
    chmod?(path: string, mode: number, cb: (err: number) => void): void
    mknod?(path: string, mode: number, dev: number, cb: (err: number) => void): void
    utimens?(path: string, atime: number, mtime: number, cb: (err: number) => void): void
    unlink?(path: string, cb: (err: number) => void): void
    rename?(src: string, dest: string, cb: (err: number) => void): void
    link?(src: string, dest: string, cb: (err: number) => void): void
    symlink?(target: string, path: string, cb: (err: number) => void): void
    mkdir?(path: string, mode: number, cb: (err: number) => void): void
    rmdir?(path: string, cb: (err: number) => void): void
    setxattr?(path: string, name: string, value: Buffer, position: number, flags: number, cb: (err: number) => void): void
    getxattr?(path: string, name: string, position: number, cb: (err: number, value?: Buffer | null) => void): void
    listxattr?(path: string, cb: (err: number, list?: string[]) => void): void
    removexattr?(path: string, name: string, cb: (err: number) => void): void
  }
  export interface FuseOptions {
    timeout?: number | false
    force?: boolean
    mkdir?: boolean
    allowOther?: boolean
    defaultPermissions?: boolean
    fsname?: string
    subtype?: string
    entryTimeout?: number
    attrTimeout?: number
    debug?: boolean
  }
  /** Replies to the kernel: an errno (0 or negative) and the op's result arrays. */
  export type FuseSignal = (err: number, ...result: unknown[]) => void
  class Fuse {
    constructor(mnt: string, ops: FuseOps, opts?: FuseOptions)
    readonly mnt: string
    readonly opts: FuseOptions
    readonly ops: FuseOps
    /** Internal dispatchers, looked up as `this._op_<name>` for every op. */
    _op_getattr(signal: FuseSignal, path: string): void
    _op_fgetattr(signal: FuseSignal, path: string, fd: number): void
    mount(cb: (err: Error | null) => void): void
    unmount(cb: (err: Error | null) => void): void
    _fuseOptions(): string
    static unmount(mnt: string, cb: (err: Error | null) => void): void
  }
  export = Fuse
}
