// The access line is serialized by hand (src/proxy/access-log.ts): it must be the JSON that pino would have
// written for the same fields, whatever the client put in X-Request-Id or the path.
import { spawnSync } from 'node:child_process'
import { Writable } from 'node:stream'
import { resolve } from 'node:path'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { randomIds, requestIdFrom } from '../../src/http/ids.js'
import { AccessLogSink, accessFields, encodeAccessLine, jsonString } from '../../src/proxy/access-log.js'
import type { CompiledRoute } from '../../src/table/compiled-route.js'
import type { Outcome } from '../../src/upstream/outcome.js'

const HOSTILE = ['', 'plain', 'quote " inside', 'back\\slash', 'new\nline', 'tab\t', '\u0000nul', '\u001f', '\u007f del',
  'é non-ascii', '\u2028 line separator', '😀 pair', 'lone \ud800 high', 'lone \udfff low', '\udc00\ud800 reversed', '</script>']

/** A finished request's outcome as record.ts hands it to a sink (the fields the access line reads). */
function outcome(overrides: Partial<Record<keyof Outcome, unknown>> = {}): Outcome {
  return {
    requestId: 'req-1', traceId: '0af7651916cd43dd8448eb211c80319c', canonicalPath: '/api/1', status: 200, refusal: null,
    upstreamName: 'api', lastTarget: '127.0.0.1:9001', attempts: 1, bytesIn: 3, bytesOut: 5, durationMs: 1.23456, grpcStatus: -1,
    consumer: null, httpVersion: '1.1', ids: '', incomingRequestId: null, parentSpanId: null,
    ...overrides,
  } as unknown as Outcome
}

const route = { id: 'api' } as CompiledRoute

/** What AccessLogSink writes through pino (its path for a logger not made by createLogger), parsed. */
function throughPino(o: Outcome, r: CompiledRoute | null, method: string): Record<string, unknown> {
  let text = ''
  const sink = new Writable({ write(chunk: Buffer, _enc, done) { text += chunk.toString(); done() } })
  const log = pino({ base: { pid: process.pid } }, sink)
  const access = new AccessLogSink(log)
  access.configure({ level: 'info', format: 'json', access: true })
  access.record(r, method, o)
  return JSON.parse(text) as Record<string, unknown>
}

describe('jsonString', () => {
  it('writes every string as JSON.stringify does, escapes and lone surrogates included', () => {
    for (const s of HOSTILE) expect(jsonString(s)).toBe(JSON.stringify(s))
    // Every UTF-16 code unit, in strings of a few units (bounded: 4,000 strings).
    let seed = 7
    for (let n = 0; n < 4000; n++) {
      let s = ''
      for (let i = 0; i < 1 + (n % 5); i++) {
        seed = (seed * 1103515245 + 12345) >>> 0
        s += String.fromCharCode(n < 2000 ? seed % 0x80 : seed % 0x10000)
      }
      expect(jsonString(s)).toBe(JSON.stringify(s))
    }
  })
})

describe('the access line', () => {
  it('holds the fields pino would have written, in the same order, for hostile and null values alike', () => {
    const cases: Array<[Outcome, CompiledRoute | null, string]> = [
      [outcome(), route, 'GET'],
      [outcome({ consumer: 'acme', httpVersion: '2.0' }), route, 'GET'],
      [outcome({ consumer: 'sub "quoted" \\ back\nslash' }), route, 'GET'],
      [outcome({ canonicalPath: '', status: 400, refusal: { code: 'BAD_REQUEST' }, upstreamName: null, lastTarget: null, attempts: 0, bytesIn: 0 }), null, 'OTHER'],
      // pino writes a lone surrogate raw, which becomes U+FFFD on the way to bytes; jsonString keeps it (below).
      ...HOSTILE.filter((s) => !/[\ud800-\udfff]/.test(s.replace(/\ud83d\ude00/g, ''))).map((s): [Outcome, CompiledRoute | null, string] => [outcome({ requestId: s, canonicalPath: '/p/' + s }), { id: s } as CompiledRoute, 'GET']),
    ]
    for (const [o, r, method] of cases) {
      const mine = JSON.parse('{"level":30,"time":"t","pid":1' + accessFields(r, method, o) + ',"msg":"access"}') as Record<string, unknown>
      const theirs = throughPino(o, r, method)
      expect(Object.keys(mine)).toEqual(Object.keys(theirs))
      const { time: _t1, pid: _p1, ...mineFields } = mine
      const { time: _t2, pid: _p2, ...theirFields } = theirs
      expect(mineFields).toEqual(theirFields)
    }
  })

  it('keeps a lone surrogate from the client as an escape, so the line stays valid UTF-8 and reads back the same', () => {
    const id = 'x\ud800y'
    const line = '{' + accessFields(route, 'GET', outcome({ requestId: id })).slice(1) + '}'
    expect(line).toContain('"requestId":"x\\ud800y"')
    expect(Buffer.from(line, 'utf8').toString('utf8')).toBe(line)
    expect((JSON.parse(line) as { requestId: string }).requestId).toBe(id)
  })

  it('is written by a createLogger logger as one JSON line with its time and pid, in order with its other lines', () => {
    const modules = JSON.stringify(resolve(import.meta.dirname, '../../dist/src/telemetry/log.js'))
    const sinkModule = JSON.stringify(resolve(import.meta.dirname, '../../dist/src/proxy/access-log.js'))
    const script = `const { createLogger } = await import(${modules})
const { AccessLogSink } = await import(${sinkModule})
const log = createLogger(process.env)
const sink = new AccessLogSink(log)
sink.configure({ level: 'info', format: 'json', access: true })
log.info('before')
sink.record({ id: 'r"1' }, 'GET', { requestId: 'a\\\\b', traceId: 't', canonicalPath: '/x', status: 200, refusal: null, upstreamName: 'u', lastTarget: 'h:1', attempts: 1, bytesIn: 0, bytesOut: 2, durationMs: 0.5, grpcStatus: -1, consumer: 'c', httpVersion: '1.1' })
log.info('after')`
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, TOLLGATE_LOG_LEVEL: 'info' } })
    expect(r.stderr).toBe('')
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(lines.map((l) => l['msg'])).toEqual(['before', 'access', 'after'])
    expect(lines[1]).toMatchObject({ level: 30, pid: r.pid, route: 'r"1', requestId: 'a\\b', status: 200, durationMs: 0.5, consumer: 'c', httpVersion: '1.1' })
    expect(lines[1]!['time']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  })
})

describe('the access lines of one turn of the event loop, encoded together after it', () => {
  const logModule = JSON.stringify(resolve(import.meta.dirname, '../../dist/src/telemetry/log.js'))
  const sinkModule = JSON.stringify(resolve(import.meta.dirname, '../../dist/src/proxy/access-log.js'))
  /** A script's stdout lines: a createLogger logger and its access sink, `body` run after them. */
  const run = (body: string): { lines: Array<Record<string, unknown>>, stderr: string } => {
    const script = `const { createLogger } = await import(${logModule})
const { AccessLogSink } = await import(${sinkModule})
const log = createLogger(process.env)
const sink = new AccessLogSink(log)
sink.configure({ level: 'info', format: 'json', access: true })
const outcome = (i, durationMs = 0.5) => ({ requestId: 'id-' + i, traceId: 't', canonicalPath: '/x', status: 200, refusal: null, upstreamName: 'u', lastTarget: 'h:1', attempts: 1, bytesIn: 0, bytesOut: 2, durationMs, grpcStatus: -1, consumer: null, httpVersion: '1.1' })
${body}`
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, TOLLGATE_LOG_LEVEL: 'info' } })
    return { lines: r.stdout.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>), stderr: r.stderr }
  }

  it('are all written, in the order their requests ended, among the other lines in the order they were logged', () => {
    const r = run(`for (let i = 0; i < 3000; i++) sink.record({ id: 'r' }, 'GET', outcome(i))
log.info('between')
sink.record({ id: 'r' }, 'GET', outcome('last'))
setImmediate(() => log.info('next turn'))`)
    expect(r.stderr).toBe('')
    const ids = r.lines.map((l) => l['requestId'] ?? l['msg'])
    expect(ids).toEqual([...Array.from({ length: 3000 }, (_, i) => `id-${i}`), 'between', 'id-last', 'next turn'])
  })

  it('are written when the process exits in the turn their requests ended', () => {
    const r = run(`sink.record({ id: 'r' }, 'GET', outcome(1))
sink.record({ id: 'r' }, 'GET', outcome(2))
process.exit(0)`)
    expect(r.stderr).toBe('')
    expect(r.lines.map((l) => l['requestId'])).toEqual(['id-1', 'id-2'])
  })

  it('carry the time their request ended, not the time they were encoded, also a line built as a string', () => {
    // The turn goes on for 300 ms after the requests end; the lines are encoded after that. The second line's
    // request id is not ASCII, so that line is built as a string.
    const r = run(`const ended = Date.now()
sink.record({ id: 'r' }, 'GET', outcome(1))
sink.record({ id: 'r' }, 'GET', outcome('\u00e9'))
const until = Date.now() + 300
while (Date.now() < until) { /* the rest of the turn */ }
setImmediate(() => log.info({ ended }, 'ended'))`)
    expect(r.stderr).toBe('')
    const access = r.lines.filter((l) => l['msg'] === 'access')
    expect(access.map((l) => l['requestId'])).toEqual(['id-1', 'id-\u00e9'])
    const ended = r.lines.find((l) => l['msg'] === 'ended')!['ended'] as number
    for (const line of access) {
      const time = Date.parse(line['time'] as string)
      expect(time).toBeGreaterThanOrEqual(ended)
      expect(time - ended).toBeLessThan(150)
    }
  })
})

describe('the access line encoded into the batch', () => {
  const HEAD = '{"level":30,"time":"2026-12-04T12:00:00.000Z","pid":4242'
  const HEAD_BYTES = Buffer.from(HEAD, 'latin1')
  /** What the string path writes for the same line. */
  const viaString = (r: CompiledRoute | null, method: string, o: Outcome): string => HEAD + accessFields(r, method, o) + ',"msg":"access"}\n'
  const encode = (r: CompiledRoute | null, method: string, o: Outcome): string | null => {
    const b = Buffer.alloc(70000, 0x58)
    const end = encodeAccessLine(b, 17, HEAD_BYTES, r, method, o)
    return end < 0 ? null : b.toString('utf8', 17, end)
  }

  it('writes the bytes of the string path, and takes the string path for anything it would not write the same', () => {
    const cases: Array<[Outcome, CompiledRoute | null, string]> = [
      [outcome(), route, 'GET'],
      [outcome({ consumer: 'acme', httpVersion: '2.0', grpcStatus: 14, status: 200 }), route, 'POST'],
      [outcome({ canonicalPath: '', status: 400, refusal: { code: 'BAD_REQUEST' }, upstreamName: null, lastTarget: null, attempts: 0, bytesIn: 0 }), null, 'OTHER'],
      [outcome({ bytesIn: 2 ** 40 + 7, bytesOut: Number.MAX_SAFE_INTEGER, attempts: 10, status: 599 }), route, 'GET'],
      ...HOSTILE.map((s): [Outcome, CompiledRoute | null, string] => [outcome({ requestId: s }), route, 'GET']),
      ...HOSTILE.map((s): [Outcome, CompiledRoute | null, string] => [outcome({ canonicalPath: '/p/' + s, consumer: s }), { id: 'x' } as CompiledRoute, 'GET']),
      [outcome({ requestId: '~\u007f' }), route, 'GET'],
      [outcome({ durationMs: Number.NaN }), route, 'GET'],
    ]
    let fast = 0
    for (const [o, r, method] of cases) {
      const line = encode(r, method, o)
      if (line === null) continue
      fast++
      expect(line).toBe(viaString(r, method, o))
    }
    // The printable-ASCII cases go the fast way; the others (escapes, non-ASCII, DEL, NaN) may not.
    expect(fast).toBeGreaterThanOrEqual(6)
    expect(encode(route, 'GET', outcome())).not.toBeNull()
    expect(encode(route, 'GET', outcome({ requestId: 'é' }))).toBeNull()
    expect(encode(route, 'GET', outcome({ consumer: 'a"b' }))).toBeNull()
  })

  it('copies the ids the gateway made from the request\'s ids, and writes a client\'s request id or a continued trace id as they are', () => {
    for (let n = 0; n < 2000; n++) {
      const ids = randomIds()
      const own = outcome({ ids, requestId: requestIdFrom(ids), traceId: ids.slice(0, 32) })
      expect(encode(route, 'GET', own)).toBe(viaString(route, 'GET', own))
    }
    const ids = randomIds()
    // The client's X-Request-Id, and the caller's trace (its parent span id known): not from ids.
    const theirs = outcome({ ids, requestId: 'client-id-1', incomingRequestId: 'client-id-1', traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentSpanId: '00f067aa0ba902b7' })
    const line = encode(route, 'GET', theirs)
    expect(line).toBe(viaString(route, 'GET', theirs))
    expect(line).toContain('"requestId":"client-id-1","traceId":"4bf92f3577b34da6a3ce929d0e0e4736"')
  })

  it('writes durations as String(Math.round(ms * 1000) / 1000) does', () => {
    const b = Buffer.alloc(4096)
    const check = (ms: number): void => {
      const o = outcome({ durationMs: ms })
      const end = encodeAccessLine(b, 0, HEAD_BYTES, route, 'GET', o)
      expect(b.toString('utf8', 0, end)).toBe(viaString(route, 'GET', o))
    }
    for (let k = 0; k < 200_000; k++) check(k / 1000)
    let seed = 99
    for (let n = 0; n < 20_000; n++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
      check((seed / 0xffffffff) * 10 ** (n % 10))
    }
  })
})
