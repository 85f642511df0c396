/**
 * `berth up` keeps its terminal for people: each child's stderr goes to
 * DIR/logs/<name>.log, and only its warnings and errors are echoed (minus
 * routine housekeeping such as meta's "expired N session(s)").
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs'
import { join } from 'node:path'
import type { Readable } from 'node:stream'

const LEVEL = /^\S+ \S+ (warn|error) /
const ROUTINE = /expired \d+ session\(s\)/

export class UpLogs {
  private readonly files = new Map<string, WriteStream>()
  constructor(readonly dir: string, private readonly echo: (line: string) => void) {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
  }

  path(name: string): string {
    return join(this.dir, `${name}.log`)
  }

  /** Appends what the child wrote before it was ready, then follows its stderr. */
  follow(name: string, stderr: Readable | null, earlier = ''): void {
    let file = this.files.get(name)
    if (!file) {
      file = createWriteStream(this.path(name), { flags: 'a', mode: 0o600 })
      this.files.set(name, file)
    }
    const out = file
    if (earlier) out.write(earlier)
    if (!stderr) return
    let partial = ''
    stderr.setEncoding('utf8')
    stderr.on('data', (chunk: string) => {
      out.write(chunk)
      partial += chunk
      const lines = partial.split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) if (LEVEL.test(line) && !ROUTINE.test(line)) this.echo(`${name}: ${line}`)
    })
  }

  close(): void {
    for (const f of this.files.values()) f.end()
  }
}
