/**
 * A node's identity survives restarts: generated once and kept in DIR/node-id,
 * so meta's replica locations stay valid when the same disk comes back.
 */
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { NODE_ID_RE } from './config'

export async function loadNodeId(dir: string, explicit?: string): Promise<string> {
  const path = join(dir, 'node-id')
  let stored: string | undefined
  try {
    stored = (await readFile(path, 'utf8')).trim()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (stored !== undefined && !NODE_ID_RE.test(stored)) throw new Error(`${path} holds an invalid node id "${stored.slice(0, 80)}"`)
  if (explicit !== undefined) {
    if (stored !== undefined && stored !== explicit) throw new Error(`--id ${explicit} differs from the id ${stored} this directory belongs to (${path})`)
    if (stored === undefined) await writeFile(path, explicit + '\n', { flag: 'wx' })
    return explicit
  }
  if (stored) return stored
  const id = 'n' + randomBytes(5).toString('hex')
  await writeFile(path, id + '\n', { flag: 'wx' })
  return id
}
