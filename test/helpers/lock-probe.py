#!/usr/bin/env python3
# A process that opens files and takes locks on command, so a test can drive
# the exact interleaving of two processes (or two mounts) through real
# fcntl(2)/flock(2) calls. Node has no fcntl locks; Python's fcntl module
# calls the syscalls directly. One command per stdin line, one answer per
# stdout line:
#   open NAME PATH MODE          (MODE r, w or rw)    -> ok
#   close NAME                                        -> ok
#   lock NAME CMD TYPE START LEN (CMD setlk, setlkw, ofd, ofdw; TYPE r, w, u) -> ok | err ERRNO
#   getlk NAME TYPE START LEN    -> lk TYPE START LEN PID  (TYPE u: nothing in the way)
#   flock NAME OP                (OP sh, ex, un, with +nb)  -> ok | err ERRNO
#   write NAME TEXT / read NAME  -> ok / data TEXT
#   pid                          -> pid N
import errno
import fcntl
import os
import struct
import sys

F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
TYPES = {'r': fcntl.F_RDLCK, 'w': fcntl.F_WRLCK, 'u': fcntl.F_UNLCK}
NAMES = {fcntl.F_RDLCK: 'r', fcntl.F_WRLCK: 'w', fcntl.F_UNLCK: 'u'}
FMT = 'hhqqi4x'  # struct flock on x86_64/aarch64 Linux: type, whence, start, len, pid
fds = {}


def answer(line):
    sys.stdout.write(line + '\n')
    sys.stdout.flush()


def run(words):
    cmd = words[0]
    if cmd == 'pid':
        return 'pid %d' % os.getpid()
    if cmd == 'open':
        flags = {'r': os.O_RDONLY, 'w': os.O_WRONLY, 'rw': os.O_RDWR}[words[3]] | (os.O_CREAT if words[3] != 'r' else 0)
        fds[words[1]] = os.open(words[2], flags, 0o644)
        return 'ok'
    fd = fds[words[1]]
    if cmd == 'close':
        os.close(fds.pop(words[1]))
        return 'ok'
    if cmd == 'write':
        os.write(fd, ' '.join(words[2:]).encode())
        return 'ok'
    if cmd == 'read':
        return 'data ' + os.pread(fd, 1 << 16, 0).decode()
    if cmd == 'lock':
        op = {'setlk': fcntl.F_SETLK, 'setlkw': fcntl.F_SETLKW, 'ofd': F_OFD_SETLK, 'ofdw': F_OFD_SETLKW}[words[2]]
        fcntl.fcntl(fd, op, struct.pack(FMT, TYPES[words[3]], os.SEEK_SET, int(words[4]), int(words[5]), 0))
        return 'ok'
    if cmd == 'getlk':
        got = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(FMT, TYPES[words[2]], os.SEEK_SET, int(words[3]), int(words[4]), 0))
        t, _, start, length, pid = struct.unpack(FMT, got)
        return 'lk %s %d %d %d' % (NAMES[t], start, length, pid)
    if cmd == 'flock':
        op = 0
        for part in words[2].split('+'):
            op |= {'sh': fcntl.LOCK_SH, 'ex': fcntl.LOCK_EX, 'un': fcntl.LOCK_UN, 'nb': fcntl.LOCK_NB}[part]
        fcntl.flock(fd, op)
        return 'ok'
    raise ValueError('unknown command ' + cmd)


for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    try:
        answer(run(words))
    except OSError as e:
        answer('err ' + errno.errorcode.get(e.errno, str(e.errno)))
    except Exception as e:  # a bad command is the test's bug: say so
        answer('bad ' + repr(e))
