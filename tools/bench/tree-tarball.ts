/**
 * The source-tree tarball for the extract workload: the first N regular files
 * (sorted walk, directories included as their own entries) of a real tree,
 * by default berth's own node_modules. Built once per run, outside any timing.
 */
import { execFile } from 'node:child_process'
import { opendir, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface TreeTarball {
  path: string
  /** entries in the archive: directories plus regular files */
  entries: number
  files: number
  source: string
}

/** berth's package root, from dist/tools/bench/ or tools/bench/. */
export function defaultTreeSource(): string {
  const up = __dirname.includes(`${join('dist', 'tools')}`) ? '../../..' : '../..'
  return resolve(__dirname, up, 'node_modules')
}

async function collect(root: string, maxFiles: number): Promise<{ list: string[]; files: number }> {
  const list: string[] = []
  let files = 0
  const walk = async (rel: string): Promise<void> => {
    const dir = await opendir(join(root, rel))
    const names: { name: string; isDir: boolean; isFile: boolean }[] = []
    for await (const d of dir) names.push({ name: d.name, isDir: d.isDirectory(), isFile: d.isFile() })
    names.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    for (const n of names) {
      if (files >= maxFiles) return
      const child = rel ? `${rel}/${n.name}` : n.name
      if (n.isFile) {
        list.push(child)
        files++
      } else if (n.isDir) {
        list.push(child)
        await walk(child)
      }
    }
  }
  await walk('')
  return { list, files }
}

/** Writes `dir/tree.tar`. Fails if the source has no files. */
export async function buildTreeTarball(source: string, maxFiles: number, dir: string): Promise<TreeTarball> {
  const { list, files } = await collect(source, maxFiles)
  if (files === 0) throw new Error(`tree source ${source} has no regular files`)
  const listPath = join(dir, 'tree.list')
  const path = join(dir, 'tree.tar')
  await writeFile(listPath, list.join('\0') + '\0')
  await run('tar', ['-cf', path, '-C', source, '--no-recursion', '--null', '-T', listPath], { maxBuffer: 16 * 1024 * 1024 })
  return { path, entries: list.length, files, source }
}
