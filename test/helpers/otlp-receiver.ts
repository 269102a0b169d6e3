// A real OTLP/HTTP trace receiver on 127.0.0.1:0: POST /v1/traces with an ExportTraceServiceRequest in
// protobuf, decoded with the OpenTelemetry proto definitions (the generated protobufjs module that
// @opentelemetry/otlp-transformer 0.52 ships, installed as the dev dependency otlp-transformer-052; the
// current otlp-transformer only encodes). Every span received is kept, flattened for assertions.
import { EventEmitter } from 'node:events'
import http from 'node:http'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { listenForTest } from './listen.js'

interface ProtoAnyValue {
  stringValue?: string
  boolValue?: boolean
  intValue?: string
  doubleValue?: number
}
interface ProtoKeyValue { key: string; value?: ProtoAnyValue }
interface ProtoSpan {
  traceId?: Buffer
  spanId?: Buffer
  parentSpanId?: Buffer
  traceState?: string
  name: string
  kind: number
  startTimeUnixNano: string
  endTimeUnixNano: string
  attributes?: ProtoKeyValue[]
  status?: { code?: number }
}
interface ProtoRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: ProtoKeyValue[] }
    scopeSpans?: Array<{ spans?: ProtoSpan[] }>
  }>
}
interface Decoder {
  decode(buf: Uint8Array): unknown
  toObject(message: unknown, options: { longs: StringConstructor; defaults: boolean }): unknown
}

const require = createRequire(import.meta.url)
const root = require(join(dirname(require.resolve('otlp-transformer-052/package.json')), 'build/src/generated/root.js')) as {
  opentelemetry: { proto: { collector: { trace: { v1: { ExportTraceServiceRequest: Decoder } } } } }
}
const ExportTraceServiceRequest = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest

/** OTLP SpanKind (trace.proto): 2 SERVER, 3 CLIENT. */
export const SpanKind = { Server: 2, Client: 3 } as const

export interface ReceivedSpan {
  readonly traceId: string
  readonly spanId: string
  /** '' for a root span. */
  readonly parentSpanId: string
  readonly traceState: string
  readonly name: string
  readonly kind: number
  readonly startNs: bigint
  readonly endNs: bigint
  readonly attributes: Readonly<Record<string, string | number | boolean>>
  /** OTLP StatusCode: 0 unset, 1 ok, 2 error. */
  readonly statusCode: number
  readonly resource: Readonly<Record<string, string | number | boolean>>
}

export interface OtlpReceiver {
  /** http://127.0.0.1:port/v1/traces */
  readonly endpoint: string
  readonly spans: ReceivedSpan[]
  /** Export requests received (decoded or not). */
  readonly requests: number
  /** The number of spans in each decoded export request, in arrival order. */
  readonly batchSizes: number[]
  /** For each decoded export request, the number of spans of each of its resourceSpans entries. */
  readonly resourceSpanSizes: number[][]
  /** Resolves once `predicate` holds for the spans received (checked on each arrival); rejects after `timeoutMs`. */
  waitFor(predicate: (spans: readonly ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<void>
  close(): Promise<void>
}

export interface ReceiverOptions {
  /** 'ok' (200, default), 'reject' (400: the export fails), 'hang' (never answers). */
  readonly mode?: 'ok' | 'reject' | 'hang'
  /** The first this many export requests get 503 with Retry-After: 0 (their spans are not kept). */
  readonly unavailableFirst?: number
  readonly suite?: boolean
}

function flatten(list: ProtoKeyValue[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {}
  for (const kv of list ?? []) {
    const v = kv.value ?? {}
    if (v.stringValue !== undefined) out[kv.key] = v.stringValue
    else if (v.intValue !== undefined) out[kv.key] = Number(v.intValue)
    else if (v.boolValue !== undefined) out[kv.key] = v.boolValue
    else if (v.doubleValue !== undefined) out[kv.key] = v.doubleValue
  }
  return out
}

function hex(b: Buffer | undefined): string {
  return b === undefined ? '' : Buffer.from(b).toString('hex')
}

export async function startOtlpReceiver(options: ReceiverOptions = {}): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = []
  const batchSizes: number[] = []
  const resourceSpanSizes: number[][] = []
  const arrivals = new EventEmitter()
  let requests = 0
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      requests++
      if (options.mode === 'hang') return
      if (requests <= (options.unavailableFirst ?? 0)) {
        res.writeHead(503, { 'retry-after': '0' }).end()
        return
      }
      if (req.method !== 'POST' || req.url !== '/v1/traces' || req.headers['content-type'] !== 'application/x-protobuf') {
        res.writeHead(415).end()
        return
      }
      const message = ExportTraceServiceRequest.toObject(ExportTraceServiceRequest.decode(Buffer.concat(chunks)), { longs: String, defaults: false }) as ProtoRequest
      const before = spans.length
      const sizes: number[] = []
      for (const rs of message.resourceSpans ?? []) {
        const first = spans.length
        const resource = flatten(rs.resource?.attributes)
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            spans.push({
              traceId: hex(s.traceId), spanId: hex(s.spanId), parentSpanId: hex(s.parentSpanId), traceState: s.traceState ?? '',
              name: s.name, kind: s.kind, startNs: BigInt(s.startTimeUnixNano), endNs: BigInt(s.endTimeUnixNano),
              attributes: flatten(s.attributes), statusCode: s.status?.code ?? 0, resource,
            })
          }
        }
        sizes.push(spans.length - first)
      }
      batchSizes.push(spans.length - before)
      resourceSpanSizes.push(sizes)
      if (options.mode === 'reject') {
        res.writeHead(400, { 'content-type': 'application/x-protobuf' }).end()
      } else {
        // An empty ExportTraceServiceResponse: no partial_success.
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
      }
      arrivals.emit('spans')
    })
  })
  const { port, close } = await listenForTest(server, options.suite === true)
  return {
    endpoint: `http://127.0.0.1:${port}/v1/traces`,
    spans,
    get requests() { return requests },
    batchSizes,
    resourceSpanSizes,
    waitFor(predicate, timeoutMs = 15_000) {
      if (predicate(spans)) return Promise.resolve()
      return new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (!predicate(spans)) return
          clearTimeout(timer)
          arrivals.off('spans', check)
          resolve()
        }
        const timer = setTimeout(() => {
          arrivals.off('spans', check)
          reject(new Error(`OTLP receiver: condition not met within ${timeoutMs} ms; ${spans.length} spans received: ${spans.map((s) => s.name).join(', ')}`))
        }, timeoutMs)
        arrivals.on('spans', check)
      })
    },
    close,
  }
}
