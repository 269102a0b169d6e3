import { pino, type Logger } from 'pino'

export type { Logger }

/** JSON lines on stdout (stderr for the CLI commands). Level from TOLLGATE_LOG_LEVEL, default info. */
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']

/** A bad TOLLGATE_LOG_LEVEL, as one line (pino would throw with a stack). */
export class LogLevelError extends Error {
  override name = 'LogLevelError'
}

export function createLogger(env: NodeJS.ProcessEnv = process.env, destination: 1 | 2 = 1): Logger {
  const level = env['TOLLGATE_LOG_LEVEL'] ?? 'info'
  if (!LEVELS.includes(level)) throw new LogLevelError(`TOLLGATE_LOG_LEVEL: expected one of ${LEVELS.join(', ')}, got ${JSON.stringify(level)}`)
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: destination, sync: false }))
}
