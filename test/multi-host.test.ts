/**
 * docs/deploy.md, run on four "hosts" (network namespaces on one bridge,
 * test/helpers/netns.ts): `berth init-cluster` writes the configuration; the
 * NATS host runs nats-server and meta, two data node hosts run one node each,
 * a client host mounts. Every process is started with the command line its
 * shipped systemd unit runs (tools/systemd/, expanded by
 * test/helpers/unit-command.ts) with that host's own /etc/berth and
 * /var/lib/berth (folders of the test), and the client with the documented
 * `berth mount`. A file written through the mount is stored on both node hosts:
 * its block file is on each node's disk.
 *
 * The mount enters only the client's network namespace (nsenter --net), so
 * the FUSE mount is in this machine's mount namespace where the test reads
 * it; teardown unmounts it and kills every process by PID.
 */
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { appendFileSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import t from 'tap'
import { BERTH_BIN } from '../cli/spawn-service'
import { readCredentialsFile } from '../common/credentials'
import { natsServerPath } from '../cli/nats-server'
import { loadOrCreateNatsState } from '../cli/up-state'
import { createLab, netnsUnavailable, startIn, type Started } from './helpers/netns'
import { unitCommand } from './helpers/unit-command'
import { fusermountUz } from './helpers/mount'
import { testDir } from './helpers/test-dir'
import { blockName } from '../common/block-hash'
import { within } from './helpers/lifecycle'

const REPO = resolve(__dirname, '..', '..')
const UNITS = join(REPO, 'tools', 'systemd')

function skipReason(): string | false {
  const why = netnsUnavailable()
  if (why) return `network namespaces unavailable: ${why}`
  if (!natsServerPath()) return 'nats-server not installed'
  if (!existsSync('/dev/fuse')) return 'no /dev/fuse'
  return false
}

/** A host's own /etc/berth and /var/lib/berth, as folders of the test. */
function hostPaths(root: string) {
  const etc = join(root, 'etc')
  const lib = join(root, 'var')
  mkdirSync(etc, { recursive: true, mode: 0o700 })
  mkdirSync(lib, { recursive: true })
  return {
    etc,
    lib,
    map: (p: string) => p.replace('/etc/berth/', `${etc}/`).replace('/var/lib/berth/', `${lib}/`).replace('/usr/local/bin/berth', BERTH_BIN),
  }
}

const isReady = (out: string) => /"event":"ready"/.test(out)

t.test('multi-host deployment: NATS + meta, two node hosts, a client host', { skip: skipReason() }, async (t) => {
  const dir = testDir(t)
  const lab = createLab()
  const mnt = join(dir, 'mnt')
  mkdirSync(mnt)
  const procs: Started[] = []
  // one teardown, in order: the mount first (it lives in this machine's mount
  // namespace), then every process by PID, then the namespaces
  t.teardown(async () => {
    fusermountUz(mnt)
    await lab.destroy()
    try {
      rmdirSync(mnt)
    } catch {
      // busy or not empty: left in the test dir
    }
  })

  const server = lab.addHost('nats')
  const nodeHosts = [lab.addHost('node1'), lab.addHost('node2')]
  const client = lab.addHost('client')

  // 1. configuration, written once (docs/deploy.md: berth init-cluster)
  const admin = join(dir, 'admin')
  const serverFs = hostPaths(join(dir, 'nats-host'))
  const init = spawnSync(process.execPath, [BERTH_BIN, 'init-cluster', '--dir', admin, '--listen', server.ip, '--nats-store', join(serverFs.lib, 'nats')], { encoding: 'utf8' })
  t.equal(init.status, 0, `init-cluster: ${init.stderr}`)

  // 2. the NATS host: nats.conf and meta.env, then nats-server and meta from their units
  copyFileSync(join(admin, 'nats.conf'), join(serverFs.etc, 'nats.conf'))
  copyFileSync(join(admin, 'meta.env'), join(serverFs.etc, 'meta.env'))
  const natsCmd = unitCommand(join(UNITS, 'berth-nats.service'), serverFs.map)
  mkdirSync(join(serverFs.lib, 'nats'), { recursive: true }) // StateDirectory=
  procs.push(await startIn(lab, server, natsCmd.argv, natsCmd.env, (_o, e) => /Server is ready/.test(e), { ms: 15_000 }))
  const metaCmd = unitCommand(join(UNITS, 'berth-meta.service'), serverFs.map)
  mkdirSync(join(serverFs.lib, 'meta'), { recursive: true })
  procs.push(await startIn(lab, server, metaCmd.argv, metaCmd.env, isReady))
  t.pass(`nats-server and meta run on ${server.ns} (${server.ip})`)

  // 3. each node host: node.env plus its own advertised URL, then berth-node's command
  const nodeFs = nodeHosts.map((h) => hostPaths(join(dir, `${h.name}-host`)))
  const nodes = await Promise.all(
    nodeHosts.map(async (h, i) => {
      const fs = nodeFs[i]!
      copyFileSync(join(admin, 'node.env'), join(fs.etc, 'node.env'))
      appendFileSync(join(fs.etc, 'node.env'), `BERTH_NODE_ADVERTISE=http://${h.ip}:7001\nBERTH_ZONE=${h.name}\n`)
      const cmd = unitCommand(join(UNITS, 'berth-node.service'), fs.map)
      mkdirSync(join(fs.lib, 'node'), { recursive: true })
      const started = await startIn(lab, h, cmd.argv, cmd.env, isReady)
      procs.push(started)
      return started
    }),
  )
  t.equal(nodes.length, 2, 'both nodes ready')

  // 4. the client host: client.env, then the documented mount
  const clientFs = hostPaths(join(dir, 'client-host'))
  copyFileSync(join(admin, 'client.env'), join(clientFs.etc, 'client.env'))
  const url = `nats://${server.ip}:4222`
  procs.push(
    await startIn(lab, client, [BERTH_BIN, 'mount', url, mnt, '-o', `credentials=${join(clientFs.etc, 'client.env')}`, '--foreground'], {}, isReady, { hostMounts: true, ms: 30_000 }),
  )

  // meta knows both nodes by the URLs they advertise
  const status = spawnSync('ip', ['netns', 'exec', client.ns, process.execPath, BERTH_BIN, 'status', '--json', '--credentials', join(clientFs.etc, 'client.env')], { encoding: 'utf8', timeout: 30_000 })
  t.equal(status.status, 0, `berth status from the client host: ${status.stderr}`)
  const urls = (JSON.parse(status.stdout) as { nodes: Array<{ url: string; alive: boolean }> }).nodes.filter((n) => n.alive).map((n) => n.url).sort()
  t.same(urls, nodeHosts.map((h) => `http://${h.ip}:7001`), 'meta lists both nodes at their advertised URLs')

  // 5. a file written from the client is stored on both node hosts
  const data = randomBytes(3 * 1024 * 1024 + 123) // one block, well past the inline limit
  const file = join(mnt, 'hello.bin')
  const started = Date.now()
  writeFileSync(file, data, { flush: true })
  const writeMs = Date.now() - started
  t.ok(readFileSync(file).equals(data), 'reads back identical through the mount')
  const hash = blockName(data, 'blake3')
  for (const [i, fs] of nodeFs.entries()) {
    const path = join(fs.lib, 'node', 'blocks', hash.slice(0, 2), hash.slice(2, 4), hash)
    t.ok(existsSync(path), `the block is on ${nodeHosts[i]!.name}'s disk`)
    if (existsSync(path)) t.ok(readFileSync(path).equals(data), `  with the file's bytes`)
  }
  t.comment(`3 MiB written from the client host to 2 node hosts (chain replication over the lab bridge) in ${writeMs} ms`)

  // 6. clean unmount: the client flushes and exits by itself
  const mountProc = procs.at(-1)!.child
  const exited = new Promise<number | null>((resolve) => mountProc.once('exit', (code) => resolve(code)))
  spawnSync('fusermount3', ['-u', mnt])
  const code = await within(exited, 15_000, 'still running')
  t.equal(code, 0, 'the client exits 0 after the unmount')
  writeFileSync(join(dir, 'done'), '')
})

t.test('berth up --listen serves other hosts: a node and a mount elsewhere join with DIR/node.env and DIR/client.env', { skip: skipReason() }, async (t) => {
  const dir = testDir(t)
  const lab = createLab()
  const mnt = join(dir, 'mnt')
  mkdirSync(mnt)
  t.teardown(async () => {
    fusermountUz(mnt)
    await lab.destroy()
    try {
      rmdirSync(mnt)
    } catch {
      // left in the test dir
    }
  })
  const upHost = lab.addHost('up')
  const nodeHost = lab.addHost('node')
  const client = lab.addHost('client')
  const upDir = join(dir, 'up')
  const upArgs = [BERTH_BIN, 'up', '--dir', upDir, '--nodes', '1', '--no-mount', '--nats-port', '4222', '--json']
  const up = await startIn(lab, upHost, [...upArgs, '--listen', upHost.ip], {}, isReady, { ms: 90_000 })
  const url = `nats://${upHost.ip}:4222`
  t.match(up.log(), new RegExp(`"nats":"${url}"`), 'NATS listens on the --listen address')

  // docs/deploy.md: a node on another host with berth up's node.env
  const nodeEnv = join(dir, 'node-host.env')
  copyFileSync(join(upDir, 'node.env'), nodeEnv)
  const env = readCredentialsFile(nodeEnv)
  t.equal(env.BERTH_NATS_URL, url, 'node.env names the reachable URL')
  const nodeDir = join(dir, 'remote-node')
  const clientEnv = join(dir, 'client-host.env')
  copyFileSync(join(upDir, 'client.env'), clientEnv)
  // the node and the mount start together (they do not wait for each other)
  const [, mount] = await Promise.all([
    startIn(lab, nodeHost, [BERTH_BIN, 'node', '--nats', env.BERTH_NATS_URL!, '--dir', nodeDir, '--listen', '0.0.0.0:7001', '--advertise', `http://${nodeHost.ip}:7001`], env, isReady),
    startIn(lab, client, [BERTH_BIN, 'mount', url, mnt, '-o', `credentials=${clientEnv}`, '--foreground'], {}, isReady, { hostMounts: true, ms: 30_000 }),
  ])
  // the remote node is live once meta has its heartbeat: wait for both in status
  let alive: string[] = []
  for (let i = 0; i < 40 && alive.length < 2; i++) {
    const st = lab.run(client, process.execPath, [BERTH_BIN, 'status', '--json', '--credentials', clientEnv])
    if (st.code === 0) alive = (JSON.parse(st.out) as { nodes: Array<{ url: string; alive: boolean }> }).nodes.filter((n) => n.alive).map((n) => n.url)
    if (alive.length < 2) await new Promise((r) => setTimeout(r, 250))
  }
  t.equal(alive.length, 2, `meta sees berth up's node and the remote one: ${alive.join(', ')}`)
  t.ok(alive.every((u) => u.startsWith(`http://${upHost.ip}:`) || u === `http://${nodeHost.ip}:7001`), 'each at an address the others reach')

  const data = randomBytes(1024 * 1024 + 7)
  writeFileSync(join(mnt, 'f.bin'), data, { flush: true })
  const hash = blockName(data, 'blake3')
  const at = (root: string) => join(root, 'blocks', hash.slice(0, 2), hash.slice(2, 4), hash)
  t.ok(existsSync(at(join(upDir, 'node-0'))), "the block is on berth up's node")
  t.ok(existsSync(at(nodeDir)), 'and on the remote host')
  const exited = new Promise<number | null>((resolve) => mount.child.once('exit', resolve))
  spawnSync('fusermount3', ['-u', mnt])
  await exited

  // kept in DIR: a start without --listen (or --nats-port) gets the same address and port
  // (what berth up reads at start; restarting it here would double this test's time)
  t.match(readFileSync(join(upDir, 'nats', 'nats.conf'), 'utf8'), new RegExp(`^listen: ${upHost.ip.replaceAll('.', '\\.')}:4222$`, 'm'), 'nats.conf listens on the address')
  const kept = await loadOrCreateNatsState(upDir, null)
  t.same({ host: kept.host, ports: kept.ports }, { host: upHost.ip, ports: [4222] }, 'nats-state.json keeps address and port for the next start')
})
