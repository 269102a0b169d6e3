// The access log (README "Observability", "Access log"): one line per request through the process's logger,
// at info, msg "access", written when the request ends (record.ts). Nothing is done while it is off.
//
// Hot path: the line is one string concatenation of a fixed shape, handed to the logger's output (log.ts:
// gathered, then written by sonic-boom asynchronously), rather than an object serialized by pino. Profiled in
// bench scenario full-chain (--cpu-prof, µs of the gateway's main thread per request, loaded 2-core VM), the
// line through pino took 5.1 µs per request (pino's serialization 4.3 of them); this line 3.2 µs, its time
// stamp included. The strings that come from the
// client (X-Request-Id, the path) go through jsonString, which escapes as JSON.stringify does. A logger not
// made by createLogger (a test's) gets the same fields through pino.
import type { LogSettings } from '../config/schema.js'
import type { CompiledRoute } from '../table/compiled-route.js'
import { infoLineWriter, type Logger } from '../telemetry/log.js'
import type { Outcome } from '../upstream/outcome.js'
import type { OutcomeSink } from './record.js'

export class AccessLogSink implements OutcomeSink {
  readonly #log: Logger
  readonly #writer: ReturnType<typeof infoLineWriter>
  #isOn = false

  constructor(log: Logger) {
    this.#log = log
    this.#writer = infoLineWriter(log)
  }

  /**
   * log.access and log.level, once the level is in force (applyLogSettings first): at start and after every
   * reload. The lines are info lines, so a level above info turns them off as well.
   */
  configure(settings: LogSettings): void {
    this.#isOn = settings.access && this.#log.isLevelEnabled('info')
  }

  get isOn(): boolean {
    return this.#isOn
  }

  record(route: CompiledRoute | null, method: string, outcome: Outcome): void {
    if (!this.#isOn) return
    const writer = this.#writer
    if (writer !== null) {
      writer.write(writer.head() + accessFields(route, method, outcome) + ',"msg":"access"}\n')
      return
    }
    const path = outcome.canonicalPath
    this.#log.info({
      requestId: outcome.requestId,
      traceId: outcome.traceId,
      route: route === null ? null : route.id,
      method,
      httpVersion: outcome.httpVersion,
      path: path === '' ? null : path,
      status: outcome.status,
      code: outcome.refusal === null ? null : outcome.refusal.code,
      upstream: outcome.upstreamName,
      target: outcome.lastTarget,
      consumer: outcome.consumer,
      attempts: outcome.attempts,
      bytesIn: outcome.bytesIn,
      bytesOut: outcome.bytesOut,
      durationMs: Math.round(outcome.durationMs * 1000) / 1000,
      ...(outcome.grpcStatus >= 0 ? { grpcStatus: outcome.grpcStatus } : {}),
    }, 'access')
  }
}

/** The fields of an access line, each preceded by a comma: `,"requestId":"…",…,"durationMs":1.234`. */
export function accessFields(route: CompiledRoute | null, method: string, outcome: Outcome): string {
  const path = outcome.canonicalPath
  const code = outcome.refusal === null ? null : outcome.refusal.code
  return ',"requestId":' + jsonString(outcome.requestId) +
    ',"traceId":' + jsonString(outcome.traceId) +
    ',"route":' + (route === null ? 'null' : jsonString(route.id)) +
    ',"method":' + jsonString(method) +
    ',"httpVersion":"' + outcome.httpVersion + '"' +
    ',"path":' + (path === '' ? 'null' : jsonString(path)) +
    ',"status":' + outcome.status +
    ',"code":' + (code === null ? 'null' : jsonString(code)) +
    ',"upstream":' + (outcome.upstreamName === null ? 'null' : jsonString(outcome.upstreamName)) +
    ',"target":' + (outcome.lastTarget === null ? 'null' : jsonString(outcome.lastTarget)) +
    ',"consumer":' + (outcome.consumer === null ? 'null' : jsonString(outcome.consumer)) +
    ',"attempts":' + outcome.attempts +
    ',"bytesIn":' + outcome.bytesIn +
    ',"bytesOut":' + outcome.bytesOut +
    ',"durationMs":' + Math.round(outcome.durationMs * 1000) / 1000 +
    (outcome.grpcStatus >= 0 ? ',"grpcStatus":' + outcome.grpcStatus : '')
}

/**
 * A string as a JSON string literal, as JSON.stringify writes it: quoted as it is when it holds no '"', '\\',
 * control character or surrogate (the usual case, one charCode scan), else through JSON.stringify (which also
 * writes a lone surrogate as \\uXXXX, keeping the line valid UTF-8).
 */
export function jsonString(value: string): string {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return JSON.stringify(value)
  }
  return '"' + value + '"'
}
