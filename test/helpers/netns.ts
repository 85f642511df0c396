/**
 * Separate "hosts" on one machine for tests: Linux network namespaces joined
 * by veth pairs to a bridge that lives in a namespace of its own (the
 * "switch"), so the machine's own network never changes: no interface, route
 * or address is added outside the lab's namespaces.
 *
 *   switch ns  <id>-sw:  bridge br0, one veth end h<i> per host
 *   host ns    <id>-<name>: lo, eth0 = 10.77.0.<i+1>/24 (the other veth end)
 *
 * Names are unique per lab (a random id), so labs of parallel tests never
 * meet. `cut(host)` takes the host's switch port down (its packets are
 * dropped, nothing is refused: like a pulled cable, TCP connections hang
 * until their timeouts); `heal(host)` brings it back. `destroy()` kills every
 * process the lab started (by PID: SIGTERM, SIGKILL after 5 s, then SIGKILL to
 * any PID still in one of its namespaces, such as a killed process's
 * children) and deletes every namespace; the veths and
 * the bridge go with their namespaces. `createLab(t)` registers destroy() as a
 * teardown, so it runs on failure too.
 *
 * Mount namespaces: `ip netns exec` also unshares the mount namespace (to
 * remount /sys), so a FUSE mount made under it is private to that process
 * tree and invisible to the test. `spawnIn(host, ..., { hostMounts: true })`
 * enters only the network namespace (`nsenter --net=`): a mount made that way
 * lives in the machine's mount namespace, where the test reads it and must
 * unmount it (fusermount3 -uz) in its teardown.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import type { Test } from 'tap'

export interface LabHost {
  /** The name given to addHost(). */
  name: string
  /** The network namespace's name (`ip netns exec NS ...`). */
  ns: string
  /** The host's address on the lab network. */
  ip: string
  /** Its port on the switch (a veth end in the switch namespace). */
  port: string
}

export interface Lab {
  id: string
  /** The switch namespace (bridge br0). */
  switchNs: string
  hosts: Map<string, LabHost>
  /** A new namespace on the switch, with the next address. */
  addHost(name: string): LabHost
  /** Disconnects a host from every other (its switch port down). */
  cut(host: LabHost | string): void
  /** Reconnects it. */
  heal(host: LabHost | string): void
  /**
   * Starts a process inside the host's network namespace; killed by PID at
   * destroy(). `hostMounts`: enter the network namespace only (nsenter), so
   * mounts it makes are visible outside (see the file comment).
   */
  spawnIn(host: LabHost | string, cmd: string, args: string[], opts?: SpawnOptions & { hostMounts?: boolean }): ChildProcess
  /** Runs a command in the host's network namespace to completion. */
  run(host: LabHost | string, cmd: string, args: string[]): { code: number; out: string }
  /** Kills the lab's processes and deletes its namespaces; safe to call twice. */
  destroy(): Promise<void>
}

const SUBNET = '10.77.0'

function ip(args: string[]): { code: number; out: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 })
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() }
}

function must(args: string[]): void {
  const r = ip(args)
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')} failed (${r.code}): ${r.out}`)
}

/**
 * Why network namespaces cannot be used here, or null if they can: needs
 * iproute2, nsenter and the right to create namespaces (root, or CAP_SYS_ADMIN
 * and CAP_NET_ADMIN). Probed by creating and deleting one.
 */
export function netnsUnavailable(): string | null {
  if (spawnSync('sh', ['-c', 'command -v ip && command -v nsenter']).status !== 0) return 'ip (iproute2) or nsenter (util-linux) not installed'
  const probe = `berth-probe-${randomBytes(3).toString('hex')}`
  const add = ip(['netns', 'add', probe])
  if (add.code !== 0) return `\`ip netns add\` refused (needs root or CAP_SYS_ADMIN): ${add.out}`
  const veth = ip(['-n', probe, 'link', 'add', 'a0', 'type', 'veth', 'peer', 'name', 'b0'])
  ip(['netns', 'del', probe])
  if (veth.code !== 0) return `veth pairs unavailable: ${veth.out}`
  return null
}

export function createLab(t?: Test): Lab {
  const id = `bl${randomBytes(3).toString('hex')}`
  const switchNs = `${id}-sw`
  const hosts = new Map<string, LabHost>()
  const procs = new Set<ChildProcess>()
  const namespaces: string[] = []
  let destroyed: Promise<void> | undefined

  const resolveHost = (h: LabHost | string): LabHost => {
    const host = typeof h === 'string' ? hosts.get(h) : h
    if (!host) throw new Error(`no host ${String(h)} in lab ${id}`)
    return host
  }

  const destroy = () => {
    destroyed ??= (async () => {
      // SIGTERM, then SIGKILL whatever is left after 5 s; only our own PIDs
      const alive = [...procs].filter((p) => p.exitCode === null && p.signalCode === null)
      await Promise.all(
        alive.map(
          (p) =>
            new Promise<void>((resolve) => {
              const timer = setTimeout(() => p.kill('SIGKILL'), 5000)
              p.once('exit', () => {
                clearTimeout(timer)
                resolve()
              })
              if (!p.kill('SIGTERM')) {
                clearTimeout(timer)
                resolve()
              }
            }),
        ),
      )
      // whatever still runs in the lab's namespaces was started there by this lab
      // (children of a process killed above, e.g. the services `berth up` runs): by PID too
      for (const ns of namespaces) {
        for (const pid of ip(['netns', 'pids', ns]).out.split(/\s+/).filter(Boolean).map(Number)) {
          try {
            process.kill(pid, 'SIGKILL')
          } catch {
            // already gone
          }
        }
      }
      for (const ns of namespaces.reverse()) ip(['netns', 'del', ns])
    })()
    return destroyed
  }
  if (t) t.teardown(destroy)

  try {
    must(['netns', 'add', switchNs])
    namespaces.push(switchNs)
    must(['-n', switchNs, 'link', 'add', 'br0', 'type', 'bridge'])
    must(['-n', switchNs, 'link', 'set', 'br0', 'up'])
    must(['-n', switchNs, 'link', 'set', 'lo', 'up'])
  } catch (err) {
    void destroy()
    throw err
  }

  const lab: Lab = {
    id,
    switchNs,
    hosts,
    addHost(name) {
      if (hosts.has(name)) throw new Error(`host ${name} exists in lab ${id}`)
      const i = hosts.size
      if (i >= 250) throw new Error('a lab has at most 250 hosts')
      const ns = `${id}-${name}`
      const host: LabHost = { name, ns, ip: `${SUBNET}.${i + 1}`, port: `h${i}` }
      must(['netns', 'add', ns])
      namespaces.push(ns)
      // both ends are created in the switch namespace and one moved into the host's:
      // no interface ever exists in the machine's own namespace
      must(['-n', switchNs, 'link', 'add', host.port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
      must(['-n', switchNs, 'link', 'set', host.port, 'master', 'br0'])
      must(['-n', switchNs, 'link', 'set', host.port, 'up'])
      must(['-n', ns, 'link', 'set', 'lo', 'up'])
      must(['-n', ns, 'addr', 'add', `${host.ip}/24`, 'dev', 'eth0'])
      must(['-n', ns, 'link', 'set', 'eth0', 'up'])
      hosts.set(name, host)
      return host
    },
    cut(h) {
      must(['-n', switchNs, 'link', 'set', resolveHost(h).port, 'down'])
    },
    heal(h) {
      must(['-n', switchNs, 'link', 'set', resolveHost(h).port, 'up'])
    },
    spawnIn(h, cmd, args, opts = {}) {
      const host = resolveHost(h)
      const { hostMounts, ...spawnOpts } = opts
      // both exec the command in place, so child.pid is the command's own PID
      const child = hostMounts
        ? spawn('nsenter', [`--net=/run/netns/${host.ns}`, '--', cmd, ...args], spawnOpts)
        : spawn('ip', ['netns', 'exec', host.ns, cmd, ...args], spawnOpts)
      procs.add(child)
      child.once('exit', () => procs.delete(child))
      return child
    },
    run(h, cmd, args) {
      const r = spawnSync('ip', ['netns', 'exec', resolveHost(h).ns, cmd, ...args], { encoding: 'utf8', timeout: 30_000 })
      return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() }
    },
    destroy,
  }
  return lab
}

/** Names of the network namespaces that exist now (to check a lab left none behind). */
export function listNetns(): string[] {
  const r = ip(['netns', 'list'])
  return r.out
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter(Boolean)
}
