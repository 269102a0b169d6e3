// The process's one logger (README "Observability"): pino, one JSON object per line on stdout (stderr for the
// CLI commands), through sonic-boom's asynchronous destination, so a write never blocks the event loop. The
// access log, the error log and the config events all go through it, with the same base fields.
//
// The level and format come first from TOLLGATE_LOG_LEVEL / TOLLGATE_LOG_FORMAT, so that the lines written
// while routes.yaml is read already follow them; then from the config's `log:` section (in which those same
// variables are the ordinary TOLLGATE_* overrides of log.level and log.format), at start and at every reload.
import { createRequire } from 'node:module'
import { pino, type DestinationStream, type Logger } from 'pino'
import type { LogSettings } from '../config/schema.js'

export type { Logger }

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']
const FORMATS = ['json', 'pretty']

type Format = LogSettings['format']

// Linux's PIPE_BUF: a write of at most this many bytes to a pipe is atomic. With --workers every worker writes
// its own lines to the stdout it shares with the primary; sonic-boom sends whole lines, at most maxWrite
// bytes per write(2), so two workers' lines never interleave mid-line on a pipe (its default is 16 KiB).
// It is also cheaper: sonic-boom takes Buffer.byteLength of the chunk it appends to at every write, which
// flattens it; in a burst of 10,000 access lines, 6.4 us per line at 4 KiB against 9.5 at 16 KiB (loaded VM).
const PIPE_BUF = 4096

/** A bad TOLLGATE_LOG_LEVEL or TOLLGATE_LOG_FORMAT, as one line (pino would throw with a stack). */
export class LogLevelError extends Error {
  override name = 'LogLevelError'
}

/**
 * Where a logger's lines go: JSON straight to the destination, or through pino-pretty's prettifier to the
 * same destination (synchronously, so pretty and JSON lines keep their order). The format can change at a reload.
 */
class LogOutput implements DestinationStream {
  readonly #destination: DestinationStream
  #prettify: ((line: string) => string) | null = null
  /** The format asked for last (the config's), which may differ from the one in force when pretty is missing. */
  requested: Format = 'json'

  constructor(fd: 1 | 2) {
    this.#destination = pino.destination({ fd, sync: false, maxWrite: PIPE_BUF })
  }

  write(line: string): void {
    const prettify = this.#prettify
    this.#destination.write(prettify === null ? line : prettify(line))
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

const outputs = new WeakMap<Logger, { readonly output: LogOutput; readonly fd: 1 | 2 }>()

/** The process's logger, as TOLLGATE_LOG_LEVEL (default info) and TOLLGATE_LOG_FORMAT (default json) say. */
export function createLogger(env: NodeJS.ProcessEnv = process.env, destination: 1 | 2 = 1): Logger {
  const level = env['TOLLGATE_LOG_LEVEL'] ?? 'info'
  if (!LEVELS.includes(level)) throw new LogLevelError(`TOLLGATE_LOG_LEVEL: expected one of ${LEVELS.join(', ')}, got ${JSON.stringify(level)}`)
  const format = env['TOLLGATE_LOG_FORMAT'] ?? 'json'
  if (!FORMATS.includes(format)) throw new LogLevelError(`TOLLGATE_LOG_FORMAT: expected one of ${FORMATS.join(', ')}, got ${JSON.stringify(format)}`)
  const output = new LogOutput(destination)
  const log = pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, output)
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
