/** Source trees for extraction tests: what `tar -x` onto a mount is checked against. */
import { randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/** A tree of about `entries` entries under `root`: directories of small files, one file over 64 KiB (not inline) per directory. Returns the entry count. */
export function makeTree(root: string, entries: number): number {
  let n = 0
  for (let d = 0; n < entries; d++) {
    const dir = join(root, `dir${d}`)
    mkdirSync(dir)
    n++
    for (let f = 0; f < 49 && n < entries; f++, n++) {
      const size = f === 0 ? 200 * 1024 + d : 100 + ((d * 49 + f) % 3000)
      writeFileSync(join(dir, `file${f}.txt`), randomBytes(size))
    }
  }
  return n
}
