#!/bin/bash
# run in a directory: ACL sequence, prints comparable output
# PYTHON3: the interpreter to run (test/helpers/python.ts), else python3 from PATH
umask 022
mkdir d; touch f; echo hi > g
setfacl -m u:nobody:rwx f; getfacl -n f; stat -c '%A' f
chmod 640 f; getfacl -n f; stat -c '%A' f
setfacl -d -m g:daemon:rwx d; getfacl -n d
touch d/x; mkdir d/y; getfacl -n d/x d/y; stat -c '%n %A' d/x d/y
(umask 077; touch d/z; mkdir d/w; getfacl -n d/z d/w; stat -c '%n %A' d/z d/w)
(umask 077; touch u; mkdir v; stat -c '%n %A' u v)
setfacl -b f; getfacl -n f; stat -c '%A' f
setfacl -m u::rwx,g::r-x,o::--- g; getfacl -n g; stat -c '%A' g
setfacl -m u:nobody:r g; chmod 600 g; getfacl -n g
setfacl -k d; getfacl -n d
setfacl -m m::--- g; getfacl -n g; stat -c '%A' g
getfattr -d -m - f g d 2>&1 | grep -v '^$' | sed 's/=.*//'
chmod 755 .
su -s /bin/sh nobody -c 'cat g' 2>&1 | sed 's/.*: //'
setfacl -m m::r g
su -s /bin/sh nobody -c 'cat g' 2>&1
setfacl -x u:nobody g; su -s /bin/sh nobody -c 'cat g' 2>&1 | sed 's/.*: //'
setfacl -m u:nobody:rwx d; su -s /bin/sh nobody -c 'touch d/bynobody && echo ok' 2>&1 | sed 's/.*: //'
setfacl -x u:nobody d; su -s /bin/sh nobody -c 'touch d/bynobody2 && echo ok' 2>&1 | sed 's/.*: //'
setfacl -m d:u:bin:rw d; mknod d/fifo p; getfacl -n d/fifo; ln -s x d/sym; getfacl -n -P d/sym 2>&1 | tail -3
setfacl -d -m u::r-- d 2>&1; touch d/ro; getfacl -n d/ro
setfacl -m d:u:nobody:rwx f 2>&1 | sed 's/.*: //'
# chmod of new inodes under a default ACL: a fresh file's fchmod before its first close, a directory's chmod, tar -p
mkdir e; setfacl -m d:u:nobody:rwx,d:g::r-x e
"${PYTHON3:-python3}" -c "import os; fd = os.open('e/fresh', os.O_CREAT | os.O_WRONLY, 0o666); os.write(fd, b'x'); os.fchmod(fd, 0o640); os.close(fd)"
getfacl -n e/fresh; stat -c '%n %A' e/fresh
mkdir e/sub; chmod 750 e/sub; getfacl -n e/sub; stat -c '%n %A' e/sub
su -s /bin/sh nobody -c 'cat e/fresh' 2>&1 | sed 's/.*: //'
chmod 644 e/fresh; su -s /bin/sh nobody -c 'cat e/fresh; echo' 2>&1 | sed 's/.*: //'
# a directory's chmod, checked by another process at once
mkdir e/sub2; chmod 700 e/sub2; su -s /bin/sh nobody -c 'ls e/sub2' 2>&1 | sed 's/.*: //'
# tar keeps ACLs (--acls): archived here, extracted here
tar --acls -cf ../acl-seq.tar e d; mkdir x; tar --acls -xf ../acl-seq.tar -C x; rm ../acl-seq.tar
(cd x && find . | sort | xargs getfacl -n)
# an ACL set and a chmod while the file is open for writing, before its first close
"${PYTHON3:-python3}" -c "
import os, subprocess
fd = os.open('o', os.O_CREAT | os.O_WRONLY, 0o644); os.write(fd, b'z')
subprocess.run(['setfacl', '-m', 'u:nobody:rwx', 'o'])
print('open, after setfacl:', oct(os.stat('o').st_mode), oct(os.fstat(fd).st_mode))
os.fchmod(fd, 0o600)
print('open, after fchmod:', oct(os.stat('o').st_mode))
os.close(fd)"
getfacl -n o; stat -c '%n %A' o
