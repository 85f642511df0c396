"""
Names as bytes: what a directory answers for names that are not UTF-8, and
for names holding U+F700 (the escape berth's binding writes for such bytes,
client/native/berth-fuse.c name_str). Run on a berth mount and on a local
directory; every line printed must be equal (test/raw-names.test.ts).

usage: raw-names.py DIR
"""
import errno, os, sys

root = os.fsencode(sys.argv[1])
E = '\uf700'.encode()           # the escape character, as UTF-8 (ef 9c 80)
X80 = '\uf780'.encode()         # what a raw 0x80 is written as after E
NAMES = [
    b'caf\xe9', b'caf\xe8',     # Latin-1: two names, not one
    b'\xff', b'\x80', b'\xfe\xff',
    b'\xc0\xaf',                # overlong '/'
    b'a\xed\xa0\x80b',          # a UTF-16 surrogate
    b'\xf4\x90\x80\x80',        # past U+10FFFF
    b'caf\xc3\xa9',             # the UTF-8 "cafe" with an accent, beside the Latin-1 one
    E, E + E, E + b'x', b'x' + E, E + X80, E + b'\x80', b'\x80' + E, E + E + E, X80, E + b'\xe9' + E,
    b'\xe2\x82',                # a truncated 3-byte sequence
]


def out(*a):
    print(*[x.hex() if isinstance(x, bytes) else x for x in a], flush=True)


def err(fn):
    try:
        r = fn()
        return 'ok' if r is None else r
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


d = os.path.join(root, b'names')
os.mkdir(d)
for i, n in enumerate(NAMES):
    out('create', n, err(lambda: open(os.path.join(d, n), 'xb').write(b'%d\n' % i) and None))
out('list', *sorted(os.listdir(d)))
for i, n in enumerate(NAMES):
    p = os.path.join(d, n)
    out('read', n, err(lambda: open(p, 'rb').read()), os.stat(p).st_size)

# each kind of operation with such a name
sub = os.path.join(d, b'dir\xe9')
out('mkdir', err(lambda: os.mkdir(sub)))
out('create in it', err(lambda: open(os.path.join(sub, b'f\xfe'), 'wb').write(b'inner') and None))
out('rename', err(lambda: os.rename(os.path.join(d, b'caf\xe9'), os.path.join(sub, b'moved\xe9' + E))))
out('rename to existing', err(lambda: os.rename(os.path.join(d, b'caf\xe8'), os.path.join(d, b'\xff'))))
out('link', err(lambda: os.link(os.path.join(d, b'\x80'), os.path.join(sub, b'hard\x81'))))
out('nlink', os.stat(os.path.join(d, b'\x80')).st_nlink)
for t in [b'caf\xe9', b'../\xfe\xff', E + b'\x80' + E + E, b'x' * 200 + b'\xe9' * 50]:
    ln = os.path.join(sub, b'sl' + t[:1])
    out('symlink', t, err(lambda: os.symlink(t, ln)), err(lambda: os.readlink(ln)), os.lstat(ln).st_size)
out('follow', err(lambda: open(os.path.join(sub, b'sl.'), 'rb').read()))
out('list sub', *sorted(os.listdir(sub)))
out('unlink', err(lambda: os.unlink(os.path.join(sub, b'hard\x81'))), os.stat(os.path.join(d, b'\x80')).st_nlink)
out('lookup gone', err(lambda: os.stat(os.path.join(d, b'caf\xe9'))))
out('rmdir not empty', err(lambda: os.rmdir(sub)))

# xattr names
f = os.path.join(d, b'\xfe\xff')
for xn in [b'user.\xff', b'user.caf\xe9', b'user.' + E, b'user.' + E + b'\x80']:
    out('setxattr', xn, err(lambda: os.setxattr(f, xn, b'v' + xn)))
out('listxattr', *sorted(x.encode('utf8', 'surrogateescape') for x in os.listxattr(f)))
for xn in [b'user.\xff', b'user.caf\xe9', b'user.' + E, b'user.' + E + b'\x80', b'user.\xfe']:
    out('getxattr', xn, err(lambda: os.getxattr(f, xn)))
out('removexattr', err(lambda: os.removexattr(f, b'user.\xff')), err(lambda: os.getxattr(f, b'user.\xff')))

# NAME_MAX is of the kernel's bytes
for n in [b'\xff' * 255, b'\xff' * 256, E * 85, E * 86, (E + b'\x80') * 63 + b'abc', b'a' * 255, b'a' * 256]:
    p = os.path.join(d, n)
    out('long', len(n), err(lambda: open(p, 'xb').close()), err(lambda: os.stat(p).st_size))
out('final list', *sorted(os.listdir(d)))
