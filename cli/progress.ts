/**
 * Progress of a long operator command, on stderr so stdout stays clean for
 * `--json`: a bar rewritten in place on a terminal (5 times a second), plain
 * lines every few seconds otherwise (logs, CI, pipes).
 */
import { bytes } from './status'

export interface Counts {
  files: number
  bytes: number
}

export interface ProgressOptions {
  /** Command name, the first word of every line. */
  label: string
  enabled: boolean
  /** Known totals (a bar and a percentage); absent: counts and rate only. */
  total?: Counts
  stream?: NodeJS.WriteStream
  /** What `files` counts ("files" unless told). */
  unit?: string
  /** Seconds between plain lines when not on a terminal. */
  plainEveryS?: number
}

const BAR = 24

export class Progress {
  private readonly started = Date.now()
  private readonly stream: NodeJS.WriteStream
  private readonly tty: boolean
  private readonly timer: NodeJS.Timeout | undefined
  private now: Counts = { files: 0, bytes: 0 }
  private printed = false

  constructor(private readonly opts: ProgressOptions) {
    this.stream = opts.stream ?? process.stderr
    this.tty = this.stream.isTTY === true
    if (opts.enabled) {
      this.timer = setInterval(() => this.print(), this.tty ? 200 : (opts.plainEveryS ?? 5) * 1000)
      this.timer.unref()
    }
  }

  update(now: Counts): void {
    this.now = { ...now }
  }

  /** The line as printed (also for tests). */
  line(): string {
    const s = Math.max(0.001, (Date.now() - this.started) / 1000)
    const t = this.opts.total
    const rate = `${bytes(this.now.bytes / s)}/s`
    const unit = this.opts.unit ?? 'files'
    if (!t) return `${this.opts.label}: ${this.now.files} ${unit}, ${bytes(this.now.bytes)}, ${rate}`
    const frac = t.bytes > 0 ? this.now.bytes / t.bytes : t.files > 0 ? this.now.files / t.files : 1
    const clipped = Math.min(1, Math.max(0, frac))
    const filled = Math.round(clipped * BAR)
    const bar = this.tty ? `[${'#'.repeat(filled)}${'-'.repeat(BAR - filled)}] ` : ''
    return `${this.opts.label}: ${bar}${Math.floor(clipped * 100)}%  ${this.now.files}/${t.files} ${unit}  ${bytes(this.now.bytes)}/${bytes(t.bytes)}  ${rate}`
  }

  private print(): void {
    this.stream.write(this.tty ? `\r${this.line()}\x1b[K` : `${this.line()}\n`)
    this.printed = true
  }

  /** Prints the final state once (if progress is shown) and stops. */
  done(): void {
    if (this.timer) clearInterval(this.timer)
    if (!this.opts.enabled) return
    if (this.printed || this.tty) this.print()
    if (this.tty) this.stream.write('\n')
  }
}
