// Reads the gateway's output (stdout and stderr, appended to one file) as it grows: pino's JSON lines are
// counted by level; a fatal line, or any line that is not JSON (an uncaught exception's stack trace, a
// MaxListenersExceededWarning, anything Node prints itself), is a failure of the soak.
import { closeSync, openSync, readSync, statSync } from 'node:fs'

const LEVEL_NAMES: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' }
const KEPT_LINES = 10

export class LogWatch {
  readonly #path: string
  #offset = 0
  #partial = ''
  readonly levels: Record<string, number> = {}
  /** Fatal and non-JSON lines (the first few); `badLines` counts them all. */
  readonly bad: string[] = []
  badLines = 0
  /** The messages of the first error-level lines, to tell expected ones (a rejected etcd item) from others. */
  readonly errors: string[] = []

  constructor(path: string) {
    this.#path = path
  }

  /** Reads what was appended since the last call. */
  poll(): void {
    let size: number
    try {
      size = statSync(this.#path).size
    } catch {
      return
    }
    if (size <= this.#offset) return
    const buffer = Buffer.alloc(size - this.#offset)
    const fd = openSync(this.#path, 'r')
    try {
      readSync(fd, buffer, 0, buffer.length, this.#offset)
    } finally {
      closeSync(fd)
    }
    this.#offset = size
    const lines = (this.#partial + buffer.toString('utf8')).split('\n')
    this.#partial = lines.pop() ?? ''
    for (const line of lines) this.#line(line)
  }

  #line(line: string): void {
    if (line.trim() === '') return
    let entry: { level?: unknown, msg?: unknown } | null = null
    try {
      const parsed: unknown = JSON.parse(line)
      if (typeof parsed === 'object' && parsed !== null) entry = parsed as { level?: unknown, msg?: unknown }
    } catch {
      entry = null
    }
    if (entry === null || typeof entry.level !== 'number') return this.#bad(`not a log line: ${line}`)
    const level = LEVEL_NAMES[entry.level] ?? String(entry.level)
    this.levels[level] = (this.levels[level] ?? 0) + 1
    if (entry.level >= 60) this.#bad(`fatal: ${line}`)
    else if (entry.level >= 50 && this.errors.length < KEPT_LINES) this.errors.push(typeof entry.msg === 'string' ? entry.msg : line)
  }

  #bad(text: string): void {
    this.badLines++
    if (this.bad.length < KEPT_LINES) this.bad.push(text.length > 500 ? `${text.slice(0, 500)}…` : text)
  }
}
