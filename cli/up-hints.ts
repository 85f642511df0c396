/**
 * The last thing `berth up` tells a new user: how to run `berth` commands
 * against this cluster, whether or not `berth` is on PATH yet.
 */
import { accessSync, constants, realpathSync } from 'node:fs'
import { delimiter, join, relative } from 'node:path'
import { BERTH_BIN } from './spawn-service'

/** Is a `berth` executable on PATH that is this checkout or package? */
function berthOnPath(): boolean {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue
    const candidate = join(dir, 'berth')
    try {
      accessSync(candidate, constants.X_OK)
      return realpathSync(candidate) === realpathSync(BERTH_BIN)
    } catch {
      // not there
    }
  }
  return false
}

export function berthCommandHint(credentials: string): string[] {
  const rel = relative(process.cwd(), credentials)
  const creds = rel === '.berth/client.env' ? '' : ` --credentials ${credentials}`
  if (berthOnPath()) return [`  commands      berth status${creds}   (berth --help for all)`]
  return [
    `  commands      npx berth status${creds}   (from ${join(BERTH_BIN, '..', '..')})`,
    `                to type just \`berth\`: sudo ln -s ${BERTH_BIN} /usr/local/bin/berth`,
  ]
}
