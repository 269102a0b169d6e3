// The bench's own redis-server, for scenarios with cluster-scope limits (Scenario.needsRedis): started on a
// free loopback port, pinned to the load generator's core like the upstream, with no persistence, and
// stopped by its pid after the scenario. Its INFO counters tell whether Tollgate asked it at all.
import { mkdirSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { findBinary, freePort, spawnChild, tailOf, type Child } from './processes.js'

const READY_TIMEOUT_MS = 10_000
const COMMAND_TIMEOUT_MS = 2_000

export interface RedisServer {
  readonly url: string
  readonly port: number
  /** `redis-server --version`'s v=… part, for the notes. */
  readonly version: string
  readonly child: Child
}

/** Why the bench cannot start a redis-server here, or null. */
export function redisMissing(): string | null {
  return findBinary('redis-server') === null ? 'redis-server not installed (apt-get install redis-server)' : null
}

/**
 * One command in Redis's inline form, on a fresh connection; resolves with the reply's text (a status line
 * or a bulk string). Enough for PING and INFO: no client library, so no reconnect timers left behind.
 */
export function redisCommand(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let text = ''
    const done = (error: Error | null, reply = ''): void => {
      socket.destroy()
      if (error === null) resolve(reply)
      else reject(error)
    }
    socket.setTimeout(COMMAND_TIMEOUT_MS, () => done(new Error(`redis ${command}: no answer within ${COMMAND_TIMEOUT_MS} ms`)))
    socket.on('error', (error) => done(error))
    socket.setEncoding('latin1').on('data', (chunk: string) => {
      text += chunk
      const eol = text.indexOf('\r\n')
      if (eol < 0) return
      const first = text.slice(0, eol)
      if (first.startsWith('-')) return done(new Error(`redis ${command}: ${first.slice(1)}`))
      if (!first.startsWith('$')) return done(null, first.slice(1))
      const length = Number(first.slice(1))
      if (text.length >= eol + 2 + length) done(null, text.slice(eol + 2, eol + 2 + length))
    })
    socket.write(`${command}\r\n`)
  })
}

/** The integer fields of `INFO <section>` (e.g. total_commands_processed). */
export async function redisInfo(port: number, section: string): Promise<Map<string, number>> {
  const fields = new Map<string, number>()
  for (const line of (await redisCommand(port, `INFO ${section}`)).split('\r\n')) {
    const colon = line.indexOf(':')
    if (colon > 0 && /^\d+$/.test(line.slice(colon + 1))) fields.set(line.slice(0, colon), Number(line.slice(colon + 1)))
  }
  return fields
}

/** Calls per command since the start, from `INFO commandstats` (`cmdstat_evalsha:calls=12,…`); the commands a Lua script makes count too. */
export async function redisCommandCalls(port: number): Promise<Map<string, number>> {
  const calls = new Map<string, number>()
  for (const line of (await redisCommand(port, 'INFO commandstats')).split('\r\n')) {
    const match = /^cmdstat_([^:]+):calls=(\d+)/.exec(line)
    if (match !== null) calls.set(match[1]!, Number(match[2]))
  }
  return calls
}

export async function startRedis(dir: string, core: number | null): Promise<RedisServer> {
  const bin = findBinary('redis-server')
  if (bin === null) throw new Error(redisMissing() ?? 'redis-server not found')
  mkdirSync(dir, { recursive: true })
  const port = await freePort()
  // No RDB snapshots, no AOF: nothing on disk, no fork in the middle of a run.
  const child = spawnChild('redis', bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning'], { core, logPath: join(dir, 'log') })
  const deadline = Date.now() + READY_TIMEOUT_MS
  let last = 'no answer'
  while (Date.now() < deadline) {
    if (child.hasExited()) throw new Error(`redis-server exited before it was ready (${tailOf(child.logPath) || 'no output'})`)
    try {
      if (await redisCommand(port, 'PING') === 'PONG') {
        const version = (await redisCommand(port, 'INFO server')).match(/redis_version:(\S+)/)?.[1] ?? '?'
        return { url: `redis://127.0.0.1:${port}`, port, version, child }
      }
    } catch (error) {
      last = error instanceof Error ? error.message : String(error)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  await child.stop()
  throw new Error(`redis-server not ready within ${READY_TIMEOUT_MS / 1000} s (${last})`)
}
