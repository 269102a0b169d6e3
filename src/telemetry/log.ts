// The process's one logger (README "Observability"): pino, one JSON object per line on stdout (stderr for the
// CLI commands), through sonic-boom's asynchronous destination, so a write never blocks the event loop. The
// access log, the error log and the config events all go through it, with the same base fields.
//
// The level and format come first from TOLLGATE_LOG_LEVEL / TOLLGATE_LOG_FORMAT, so that the lines written
// while routes.yaml is read already follow them; then from the config's `log:` section (in which those same
// variables are the ordinary TOLLGATE_* overrides of log.level and log.format), at start and at every reload.
import cluster from 'node:cluster'
import { writeSync } from 'node:fs'
import { createRequire } from 'node:module'
import { performance } from 'node:perf_hooks'
import { pino, type DestinationStream, type Logger } from 'pino'
import type { LogSettings } from '../config/schema.js'

export type { Logger }

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']
const FORMATS = ['json', 'pretty']

type Format = LogSettings['format']

// How much goes to the file descriptor per write(2). sonic-boom writes asynchronously, in libuv's thread pool,
// and each write costs about the same whatever its size: 40.7 us of CPU for an fs.write of 2 KB on the 2-core
// VM (7.8 us for writeSync, which would block), and more on a saturated machine, where waking the thread pool
// costs the event loop its core for a while. So lines go out in few, large writes: a process alone gathers them
// for up to 100 ms or 128 Ki characters and writes up to 256 KiB at a time, as Envoy flushes its access log
// every second or 64 KiB. In bench scenario full-chain (--cpu-prof, the gateway's main thread), 10 ms batches
// of at most 16 KiB cost 3.8 us per request in fs.write; 100 ms and 256 KiB, about 1 us.
// With --workers the primary and its workers share one stdout: there each write is at most Linux's PIPE_BUF,
// 4 KiB, which a pipe writes atomically, and made of whole lines (sonic-boom never splits a write() call), so
// two workers' lines never interleave mid-line.
const PIPE_BUF = 4096
const MAX_WRITE_ALONE = 262144

/** A bad TOLLGATE_LOG_LEVEL or TOLLGATE_LOG_FORMAT, as one line (pino would throw with a stack). */
export class LogLevelError extends Error {
  override name = 'LogLevelError'
}

// Lines are gathered for up to BATCH_MS, or until the next would not fit in one write's bytes, and handed to
// sonic-boom together: sonic-boom on its own starts a write for a line whenever none is in flight, which
// below saturation is one write per request.
//
// They are gathered as bytes, each line encoded into a Buffer as it comes, not as one string concatenated
// line by line: that string is a rope of every piece of every line (the access line alone is some thirty
// pieces), held for the 100 ms of a batch, long enough to survive a scavenge or two and be copied and
// promoted, then flattened and scanned again by sonic-boom (Buffer.byteLength per write) and by fs.write. A
// line encoded at once is garbage at once, and the batch is off the V8 heap.
const BATCH_MS = 100

/**
 * Where a logger's lines go: JSON straight to the destination, or through pino-pretty's prettifier to the
 * same destination (synchronously, so pretty and JSON lines keep their order). The format can change at a reload.
 */
class LogOutput implements DestinationStream {
  readonly #destination: ReturnType<typeof pino.destination>
  #prettify: ((line: string) => string) | null = null
  /** Bytes of whole lines per write: sonic-boom never splits a Buffer it is given. */
  readonly #maxWrite: number
  /** Lines not handed to the destination yet: #batch[0, #length). */
  readonly #batch: Buffer
  #length = 0
  #timer: NodeJS.Timeout | null = null
  /** InfoLineWriter.holdsLines's callers. */
  readonly #held: Array<() => void> = []
  /** The format asked for last (the config's), which may differ from the one in force when pretty is missing. */
  requested: Format = 'json'

  readonly #fd: 1 | 2

  constructor(fd: 1 | 2, sharesFd: boolean) {
    this.#fd = fd
    this.#maxWrite = sharesFd ? PIPE_BUF : MAX_WRITE_ALONE
    this.#destination = pino.destination({ fd, sync: false, maxWrite: this.#maxWrite, contentMode: 'buffer' })
    this.#batch = Buffer.allocUnsafeSlow(this.#maxWrite)
    flushAtExit(this)
  }

  write(line: string): void {
    // Lines a caller holds to encode later go first, so the lines stay in the order they were logged.
    const held = this.#held
    for (let i = 0; i < held.length; i++) held[i]!()
    const prettify = this.#prettify
    const text = prettify === null ? line : prettify(line)
    // At most 3 bytes per UTF-16 unit: a line that might not fit goes after what is gathered.
    if (this.#length + 3 * text.length > this.#maxWrite) {
      this.flushPending()
      if (3 * text.length > this.#maxWrite) {
        const bytes = Buffer.from(text, 'utf8')
        if (bytes.length > this.#maxWrite) {
          this.#destination.write(bytes as unknown as string) // one line longer than a write: alone, whole
          return
        }
        bytes.copy(this.#batch, 0)
        this.#length = bytes.length
        this.#arm()
        return
      }
    }
    this.#length += this.#batch.write(text, this.#length, 'utf8')
    this.#arm()
  }

  /**
   * The batch, with room for `bytes` more at `length` (what is gathered is handed on first when it would not
   * fit), for a caller that encodes its line into it and then commit()s; null while lines are prettified or
   * when `bytes` is over a write (then write() a string).
   */
  room(bytes: number): Buffer | null {
    if (this.#prettify !== null || bytes > this.#maxWrite) return null
    if (this.#length + bytes > this.#maxWrite) this.flushPending()
    return this.#batch
  }

  /** Where the next line goes in the batch room() returned. */
  get length(): number {
    return this.#length
  }

  /** A line was encoded into the batch room() returned, up to `end`. */
  commit(end: number): void {
    this.#length = end
    this.#arm()
  }

  #arm(): void {
    if (this.#timer === null) {
      this.#timer = setTimeout(flushOutput, BATCH_MS, this)
      this.#timer.unref() // logging never keeps the process alive
    }
  }

  /** InfoLineWriter.holdsLines. */
  holdsLines(encode: () => void): void {
    this.#held.push(encode)
  }

  /** At process exit (after pino's own hook): what is gathered, then the destination, synchronously. */
  flushSync(): void {
    for (const encode of this.#held) {
      try {
        encode()
      } catch {
        // a line that cannot be encoded is lost; the others are still written
      }
    }
    if (this.#timer !== null) {
      clearTimeout(this.#timer)
      this.#timer = null
    }
    const length = this.#length
    this.#length = 0
    try {
      // What sonic-boom holds first, then what is gathered here. Not through write(): that would start an
      // asynchronous write, which the exiting process never completes.
      this.#destination.flushSync()
      if (length > 0) writeSync(this.#fd, this.#batch, 0, length)
    } catch {
      // stdout gone or not ready: nothing more can be written
    }
  }

  /** Hands the gathered lines to the destination (the timer, exit, a full batch). */
  flushPending(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer)
      this.#timer = null
    }
    const length = this.#length
    if (length === 0) return
    // A copy of what is gathered (sonic-boom keeps what it is given until written), and the batch reused: a
    // new batch of the full size per flush was 2.5 MB/s of allocations of 256 KiB at any traffic, and RSS
    // rose by 15 MiB/min in the soak (malloc's arenas, not the V8 heap).
    const lines = Buffer.allocUnsafe(length)
    this.#batch.copy(lines, 0, 0, length)
    this.#length = 0
    this.#destination.write(lines as unknown as string)
  }

  /** Switches format; returns a one-line warning when pretty cannot be had (then the lines stay JSON). */
  use(format: Format, fd: 1 | 2): string | null {
    this.requested = format
    if (format === 'json') {
      this.#prettify = null
      return null
    }
    const loaded = loadPrettyFactory()
    if (typeof loaded === 'string') {
      this.#prettify = null
      return loaded
    }
    // Colours only for a terminal: a pipe or a file gets plain text.
    this.#prettify = loaded({ colorize: (fd === 1 ? process.stdout : process.stderr).isTTY === true })
    return null
  }
}

function flushOutput(output: LogOutput): void {
  output.flushPending()
}

// One exit listener for every output, holding them weakly: a test process makes many loggers.
const outputsToFlush: Array<WeakRef<LogOutput>> = []

function flushAtExit(output: LogOutput): void {
  if (outputsToFlush.length === 0) {
    process.once('exit', () => {
      for (const ref of outputsToFlush) ref.deref()?.flushSync()
    })
  }
  outputsToFlush.push(new WeakRef(output))
}

type PrettyFactory = (options: { colorize: boolean }) => (line: string) => string

/**
 * pino-pretty, if it can be resolved from here. It is a devDependency: a production install
 * (`npm ci --omit=dev`) has none, and then `format: pretty` falls back to JSON with a warning rather than
 * refusing to start or to reload (README "Observability": logs must never be the reason a gateway is down).
 */
function loadPrettyFactory(): PrettyFactory | string {
  try {
    const mod = createRequire(import.meta.url)('pino-pretty') as { prettyFactory?: PrettyFactory }
    if (typeof mod.prettyFactory !== 'function') return 'log.format: pretty: the installed pino-pretty has no prettyFactory; writing JSON lines instead'
    return mod.prettyFactory
  } catch (err) {
    const code = (err as { code?: string }).code
    return code === 'MODULE_NOT_FOUND'
      ? 'log.format: pretty needs the pino-pretty package, which is not installed (npm install pino-pretty); writing JSON lines instead'
      : `log.format: pretty: pino-pretty could not be loaded (${(err as Error).message.split('\n')[0]}); writing JSON lines instead`
  }
}

// pino.stdTimeFunctions.isoTime makes a Date and its ISO string for every line; the access log writes one line
// per request, several a millisecond under load, and one string per millisecond is as exact. Measured (10,000
// access lines into a no-op stream, loaded 2-core VM): fastest batch 1.83-1.93 us per line with isoTime,
// 1.17-1.27 us with this.
let stampMs = -1
let stamp = ''
function isoTimePerMs(): string {
  return isoTimeAt(Date.now())
}

function isoTimeAt(now: number): string {
  if (now !== stampMs) {
    stampMs = now
    stamp = ',"time":"' + new Date(now).toISOString() + '"'
  }
  return stamp
}

/**
 * `before` + `,"time":"<ISO time>"` + `after` as ASCII bytes, for a millisecond: made once a second, and within the
 * second only its three millisecond digits are rewritten in place (the bytes are reused: copy them before the next
 * call). Made whole every millisecond (a Date, its ISO string, a Buffer), the head of the access line took 0.1 µs
 * of a request in `perf record -g` of bench scenario full-chain's config (~14 lines a millisecond).
 */
export class HeadStamp {
  readonly #before: string
  readonly #after: string
  #bytes = new Uint8Array(0)
  #ms = Number.NaN
  #second = Number.NaN
  /** Where the millisecond digits are in #bytes. */
  #msAt = 0

  constructor(before: string, after: string) {
    this.#before = before
    this.#after = after
  }

  at(nowMs: number): Uint8Array {
    if (nowMs === this.#ms) return this.#bytes
    this.#ms = nowMs
    const second = Math.floor(nowMs / 1000)
    const ms = nowMs - second * 1000
    if (second !== this.#second || !Number.isInteger(ms)) {
      this.#second = second
      const time = isoTimeAt(nowMs)
      this.#bytes = Buffer.from(this.#before + time + this.#after, 'latin1')
      this.#msAt = this.#before.length + time.indexOf('.') + 1
      return this.#bytes
    }
    const b = this.#bytes
    const at = this.#msAt
    b[at] = 0x30 + Math.floor(ms / 100)
    b[at + 1] = 0x30 + (Math.floor(ms / 10) % 10)
    b[at + 2] = 0x30 + (ms % 10)
    return b
  }
}

/**
 * Date.now() read off the monotonic clock: performance.now() plus the offset between the two, taken again from
 * Date.now() whenever the second changes, so a change of the system clock shows within a second and the two
 * never drift apart by more than the clock slews in one (NTP: at most 0.5 ms). Date.now() is a call into V8's
 * runtime; in `perf record -g` of the full-chain config, Runtime_DateCurrentTime under the access log's
 * record() took 0.22 µs per request, where performance.now() is a fast call.
 */
export class WallClock {
  readonly #wall: () => number
  readonly #monotonic: () => number
  #offset: number
  #second = Number.NaN

  constructor(wall: () => number = Date.now, monotonic: () => number = () => performance.now()) {
    this.#wall = wall
    this.#monotonic = monotonic
    this.#offset = wall() - monotonic()
  }

  /** Milliseconds since the epoch, whole, as Date.now(). */
  now(): number {
    const ms = Math.floor(this.#monotonic() + this.#offset)
    if (Math.floor(ms / 1000) === this.#second) return ms
    const wall = this.#wall()
    this.#offset = wall - this.#monotonic()
    this.#second = Math.floor(wall / 1000)
    return wall
  }
}

const outputs = new WeakMap<Logger, { readonly output: LogOutput; readonly fd: 1 | 2 }>()

/** Writes one serialized line (ending in a newline) where the logger's lines go, in its format. */
export type LineWriter = (line: string) => void

/** Where a line of a logger made by createLogger goes, for a caller that serializes its own (infoLineWriter). */
export interface InfoLineWriter {
  /** Milliseconds since the epoch, for headBytesAt: the line's `time`. */
  readonly now: () => number
  /**
   * `{"level":30,"time":"…","pid":N`, the start of an info line up to and including its base fields, as
   * ASCII bytes for the time `ms` (from now()), made once per millisecond (the buffer is reused: copy it
   * before the next call). A line encoded byte by byte copies these instead of reading a new string's
   * characters.
   */
  readonly headBytesAt: (ms: number) => Uint8Array
  /** A whole line, in the logger's format. */
  readonly write: LineWriter
  /**
   * The batch with room for `bytes` more at `at()`, to encode a JSON line into as UTF-8, then commit(end);
   * null when the line must go through write() instead (pretty format, or a line longer than a write).
   */
  readonly room: (bytes: number) => Buffer | null
  readonly at: () => number
  readonly commit: (end: number) => void
  /**
   * For a caller that holds lines to encode later (the access log, till the end of the event loop's turn):
   * `encode` hands them in, and is run before any other line of the logger is written and at exit, before
   * what is gathered is written out synchronously. So lines keep the order in which they were logged.
   * Encoding into the batch (room/commit) does not run it; write() does, so `encode` must return at once
   * when it holds nothing.
   */
  readonly holdsLines: (encode: () => void) => void
}

/**
 * How an info line of a logger made by createLogger is written by a caller that serializes its own: the
 * access log (src/proxy/access-log.ts). Null for any other logger (a test's), which then logs through pino.
 */
export function infoLineWriter(log: Logger): InfoLineWriter | null {
  const own = outputs.get(log)
  if (own === undefined) return null
  const pid = ',"pid":' + process.pid
  const output = own.output
  const stampBytes = new HeadStamp('{"level":30', pid)
  const clock = new WallClock()
  return {
    now: () => clock.now(),
    headBytesAt: (ms) => stampBytes.at(ms),
    write: (line) => output.write(line),
    room: (bytes) => output.room(bytes),
    at: () => output.length,
    commit: (end) => output.commit(end),
    holdsLines: (encode) => output.holdsLines(encode),
  }
}

/**
 * The process's logger, as TOLLGATE_LOG_LEVEL (default info) and TOLLGATE_LOG_FORMAT (default json) say.
 * `sharesFd`: other processes write to the same descriptor (a --workers primary and its workers).
 */
export function createLogger(env: NodeJS.ProcessEnv = process.env, destination: 1 | 2 = 1, sharesFd = cluster.isWorker): Logger {
  const level = env['TOLLGATE_LOG_LEVEL'] ?? 'info'
  if (!LEVELS.includes(level)) throw new LogLevelError(`TOLLGATE_LOG_LEVEL: expected one of ${LEVELS.join(', ')}, got ${JSON.stringify(level)}`)
  const format = env['TOLLGATE_LOG_FORMAT'] ?? 'json'
  if (!FORMATS.includes(format)) throw new LogLevelError(`TOLLGATE_LOG_FORMAT: expected one of ${FORMATS.join(', ')}, got ${JSON.stringify(format)}`)
  const output = new LogOutput(destination, sharesFd)
  const log = pino({ level, base: { pid: process.pid }, timestamp: isoTimePerMs }, output)
  outputs.set(log, { output, fd: destination })
  if (format === 'pretty') {
    const warning = output.use('pretty', destination)
    if (warning !== null) log.warn(warning)
  }
  return log
}

/**
 * Puts the config's log.level and log.format in force (at start and after every reload). A logger not made by
 * createLogger (a test's) gets the level only. The access log's on/off is the access sink's (src/proxy/access-log.ts).
 */
export function applyLogSettings(log: Logger, settings: LogSettings): void {
  if (log.level !== settings.level) log.level = settings.level
  const own = outputs.get(log)
  if (own === undefined || own.output.requested === settings.format) return
  const warning = own.output.use(settings.format, own.fd)
  if (warning !== null) log.warn(warning)
}
