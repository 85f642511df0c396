/**
 * What the kernel asked of a mount, from its metrics endpoint (`-o
 * metrics=`): counts of FUSE ops answered, by op name, so a test can say how
 * many round trips an operation cost.
 */
async function scrape(url: string): Promise<string> {
  const res = await fetch(url)
  if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status}`)
  return res.text()
}

/** FUSE ops the mount answered, by op name. */
export async function fuseOps(url: string): Promise<Map<string, number>> {
  const ops = new Map<string, number>()
  for (const line of (await scrape(url)).split('\n')) {
    const m = /^berth_client_fuse_ops_total\{([^}]*)\} ([^ ]+)$/.exec(line)
    const op = m && /op="([^"]*)"/.exec(m[1]!)?.[1]
    if (op) ops.set(op, (ops.get(op) ?? 0) + Number(m[2]))
  }
  return ops
}

/** How many more `op` were answered in `after` than in `before`. */
export function delta(after: Map<string, number>, before: Map<string, number>, op: string): number {
  return (after.get(op) ?? 0) - (before.get(op) ?? 0)
}

/** A counter the mount exports without labels (e.g. berth_client_reopen_cache_hits_total). */
export async function mountCounter(url: string, name: string): Promise<number> {
  const line = (await scrape(url)).split('\n').find((l) => l.startsWith(`${name} `))
  return line ? Number(line.slice(name.length + 1)) : 0
}
