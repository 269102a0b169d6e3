// Gateway-made responses to gRPC calls (README "gRPC", SPEC §11): a gRPC client reads only grpc-status, so
// a refusal on a gRPC route is HTTP 200, content-type application/grpc, no message, and the status in the
// trailers: 429 -> RESOURCE_EXHAUSTED, 503 -> UNAVAILABLE, 504 -> DEADLINE_EXCEEDED... (grpc-status.ts).
// x-tollgate-error and x-request-id stay in the headers, as on every gateway response.
//
// Why trailers and not a trailers-only HEADERS frame: node:http2's compatibility response (what an HTTP/2
// listener hands the pipeline) does not end the stream on its HEADERS frame, and gRPC clients read a
// grpc-status in headers that do not end the stream as metadata, then fail with "no status received". Over
// HTTP/1.1 the `trailer` header makes node:http use chunked encoding, the only framing with trailers.
import type { ServerResponse } from 'node:http'
import type { Refusal } from '../errors.js'
import { grpcStatusOfRefusal } from '../upstream/grpc-status.js'

/** Writes the refusal as a gRPC status; returns the body bytes written (always 0). */
export function sendGrpcRefusal(res: ServerResponse, refusal: Refusal, requestId: string, close: boolean, extra?: readonly string[]): number {
  const headers = [
    'content-type', 'application/grpc',
    'trailer', 'grpc-status, grpc-message',
    'x-tollgate-error', refusal.code,
    'x-request-id', requestId,
  ]
  if (extra !== undefined) headers.push(...extra)
  if (close) headers.push('connection', 'close')
  res.writeHead(200, headers)
  res.addTrailers({ 'grpc-status': String(grpcStatusOfRefusal(refusal.status)), 'grpc-message': grpcMessage(`${refusal.code}: ${refusal.message}`) })
  res.end()
  return 0
}

/** True when the request's content-type is application/grpc (or application/grpc+proto, ...). Off the hot path. */
export function isGrpcRequest(raw: readonly string[]): boolean {
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 12 && raw[i]!.toLowerCase() === 'content-type') return raw[i + 1]!.toLowerCase().startsWith('application/grpc')
  }
  return false
}

/** grpc-message is percent-encoded (gRPC over HTTP/2 spec): anything outside printable ASCII, and '%'. */
export function grpcMessage(text: string): string {
  let out = ''
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : '%' + byte.toString(16).toUpperCase().padStart(2, '0')
  }
  return out
}
