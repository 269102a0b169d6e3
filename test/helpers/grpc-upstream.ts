// A real gRPC server (@grpc/grpc-js) on 127.0.0.1:0 for the gateway's protocol: grpc upstreams: an Echo
// service (unary, server-, client- and bidi-streaming; messages are raw bytes, no .proto needed), and the
// standard health service (grpc.health.v1.Health/Check) whose answer the test sets. It records the
// metadata of every call.
import * as grpc from '@grpc/grpc-js'
import { onTestFinished } from 'vitest'

const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b }
const method = (path: string, requestStream: boolean, responseStream: boolean) => ({
  path, requestStream, responseStream,
  requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize,
})

/** The Echo service: its methods by name, for a server and for a client (grpc.makeGenericClientConstructor). */
export const ECHO_SERVICE = {
  unary: method('/test.Echo/Unary', false, false),
  serverStream: method('/test.Echo/ServerStream', false, true),
  clientStream: method('/test.Echo/ClientStream', true, false),
  bidi: method('/test.Echo/Bidi', true, true),
}

/** ServingStatus numbers of grpc.health.v1. */
export const Serving = { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } as const

export interface GrpcUpstream {
  readonly port: number
  readonly url: string
  /** Metadata of each call, in arrival order. */
  readonly calls: Array<{ path: string; metadata: Record<string, unknown> }>
  /** The health answer per service name ("" = the server); a service not listed is NOT_FOUND. */
  health: Map<string, number>
  /** Health probes received. */
  healthChecks: number
  close(): Promise<void>
}

/**
 * Unary: the request "fail:<code>" ends with that status (message "asked to fail"), otherwise the answer is
 * "echo:" + request. ServerStream: the request as text "n" → n messages "0".."n-1". ClientStream: the
 * concatenation. Bidi: each message echoed.
 */
export async function startGrpcUpstream(name = 'upstream'): Promise<GrpcUpstream> {
  const server = new grpc.Server()
  const calls: GrpcUpstream['calls'] = []
  const record = (path: string, call: { metadata: grpc.Metadata }): void => {
    calls.push({ path, metadata: call.metadata.getMap() })
  }
  const state = { health: new Map<string, number>([['', Serving.SERVING]]), healthChecks: 0 }
  server.addService(ECHO_SERVICE, {
    unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
      record(ECHO_SERVICE.unary.path, call)
      const text = call.request.toString()
      if (text.startsWith('fail:')) return done({ code: Number(text.slice(5)), details: 'asked to fail' })
      done(null, Buffer.from(`echo:${name}:${text}`))
    },
    serverStream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      record(ECHO_SERVICE.serverStream.path, call)
      const n = Number(call.request.toString())
      for (let i = 0; i < n; i++) call.write(Buffer.from(String(i)))
      call.end()
    },
    clientStream: (call: grpc.ServerReadableStream<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
      record(ECHO_SERVICE.clientStream.path, call)
      const parts: Buffer[] = []
      call.on('data', (b: Buffer) => parts.push(b))
      call.on('end', () => done(null, Buffer.concat(parts)))
    },
    bidi: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      record(ECHO_SERVICE.bidi.path, call)
      call.on('data', (b: Buffer) => call.write(b))
      call.on('end', () => call.end())
    },
  })
  server.addService({ check: method('/grpc.health.v1.Health/Check', false, false) }, {
    check: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
      state.healthChecks++
      const service = healthRequestService(call.request)
      const status = state.health.get(service)
      if (status === undefined) return done({ code: grpc.status.NOT_FOUND, details: 'unknown service' })
      done(null, status === 0 ? Buffer.alloc(0) : Buffer.from([0x08, status]))
    },
  })
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)))
  })
  let closed = false
  const upstream: GrpcUpstream = {
    port, url: `http://127.0.0.1:${port}`, calls,
    get health() { return state.health },
    set health(h) { state.health = h },
    get healthChecks() { return state.healthChecks },
    set healthChecks(n) { state.healthChecks = n },
    close: () => {
      if (closed) return Promise.resolve()
      closed = true
      server.forceShutdown()
      return Promise.resolve()
    },
  }
  onTestFinished(() => upstream.close())
  return upstream
}

/** HealthCheckRequest { string service = 1 }: the service name (one short field, no protobuf library). */
function healthRequestService(b: Buffer): string {
  if (b.length === 0) return ''
  if (b[0] !== 0x0a) return '?'
  return b.subarray(2, 2 + b[1]!).toString()
}

/** One length-prefixed, uncompressed gRPC message (for clients that are not gRPC libraries). */
export function grpcFrame(message: string | Buffer): Buffer {
  const body = Buffer.from(message)
  const out = Buffer.alloc(5 + body.length)
  out.writeUInt32BE(body.length, 1)
  body.copy(out, 5)
  return out
}

/** The messages of a length-prefixed gRPC body. */
export function grpcMessages(body: Buffer): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i + 5 <= body.length;) {
    const n = body.readUInt32BE(i + 1)
    out.push(body.subarray(i + 5, i + 5 + n))
    i += 5 + n
  }
  return out
}
