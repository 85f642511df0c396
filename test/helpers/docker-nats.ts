/**
 * nats-server with docker/nats.conf as compose runs it (values from the
 * environment); `edit` changes the config text first (a config from an older
 * release, test/meta-route.test.ts).
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { Test } from 'tap'
import { natsServerPath, stopChild, type NatsUsers } from '../../cli/nats-server'
import { freePort } from './net'
import { testDir } from './test-dir'

const REPO = resolve(__dirname, '..', '..', '..')

export interface Server {
  url: string
  users: NatsUsers
}

export async function startDockerConf(t: Test, edit: (conf: string) => string = (c) => c): Promise<Server> {
  const bin = natsServerPath()
  if (!bin) throw new Error('nats-server not on PATH')
  // nats.conf reads passwords from the environment as bare config values:
  // compose.example.env asks for a letter first, then letters and digits
  const pw = () => `p${randomBytes(16).toString('hex')}`
  const users: NatsUsers = { meta: { user: 'meta', pass: pw() }, node: { user: 'node', pass: pw() }, client: { user: 'client', pass: pw() } }
  const port = await freePort()
  const dir = testDir(t)
  const conf = join(dir, 'nats.conf')
  writeFileSync(conf, edit(readFileSync(join(REPO, 'docker', 'nats.conf'), 'utf8')))
  const child = spawn(bin, ['-c', conf], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: {
      ...process.env,
      BERTH_NATS_HOST: '127.0.0.1',
      BERTH_NATS_PORT: String(port),
      BERTH_NATS_HTTP_PORT: String(await freePort()),
      BERTH_NATS_STORE_DIR: join(dir, 'js'),
      BERTH_NATS_META_PASS: users.meta.pass,
      BERTH_NATS_NODE_PASS: users.node.pass,
      BERTH_NATS_CLIENT_PASS: users.client.pass,
    },
  })
  t.teardown(() => stopChild(child))
  await new Promise<void>((ok, fail) => {
    let log = ''
    const timer = setTimeout(() => fail(new Error(`nats-server (docker/nats.conf) not ready:\n${log}`)), 10_000)
    child.once('exit', (code) => fail(new Error(`nats-server (docker/nats.conf) exited ${code}:\n${log}`)))
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (d: string) => {
      log += d
      if (/Server is ready/.test(log)) {
        clearTimeout(timer)
        child.removeAllListeners('exit')
        child.stderr.removeAllListeners('data')
        child.stderr.resume()
        ok()
      }
    })
  })
  return { url: `nats://127.0.0.1:${port}`, users }
}
