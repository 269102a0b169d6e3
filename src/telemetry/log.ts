import { pino, type Logger } from 'pino'

export type { Logger }

/** JSON lines on stdout (stderr for the CLI commands). Level from TOLLGATE_LOG_LEVEL, default info. */
export function createLogger(env: NodeJS.ProcessEnv = process.env, destination: 1 | 2 = 1): Logger {
  const level = env['TOLLGATE_LOG_LEVEL'] ?? 'info'
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: destination, sync: false }))
}
