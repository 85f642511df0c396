import { existsSync } from 'node:fs'

/**
 * The python3 the probes run: Debian's (tools/install-deps installs it with
 * the binding's build tools; the probes need only its standard library),
 * else the first on PATH. A version manager's shim first on PATH (pyenv's on
 * the shared test machine) is a shell script that costs 0.3-1.2 s per start,
 * and the lock, copy and POSIX probes start hundreds of interpreters.
 */
export const PYTHON3 = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'
