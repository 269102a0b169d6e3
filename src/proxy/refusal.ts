// Responses made by the gateway itself (README "Error codes"): JSON {code, message}, content-type, x-tollgate-error,
// x-request-id. Bodies are serialized once per code, not per response.
import type { ServerResponse } from 'node:http'
import type { Refusal } from '../errors.js'

const bodies = new Map<Refusal, Buffer>()

export function refusalBody(refusal: Refusal): Buffer {
  let body = bodies.get(refusal)
  if (body === undefined) {
    body = Buffer.from(JSON.stringify({ code: refusal.code, message: refusal.message }))
    bodies.set(refusal, body)
  }
  return body
}

/** Writes the response; returns the body bytes written (0 for HEAD). */
export function sendRefusal(res: ServerResponse, refusal: Refusal, requestId: string, close: boolean, allow?: string, extra?: readonly string[]): number {
  const body = refusalBody(refusal)
  const headers = [
    'content-type', 'application/json',
    'content-length', String(body.length),
    'x-tollgate-error', refusal.code,
    'x-request-id', requestId,
  ]
  if (allow !== undefined) headers.push('allow', allow)
  if (extra !== undefined) headers.push(...extra)
  if (close) headers.push('connection', 'close')
  res.writeHead(refusal.status, headers)
  if (res.req?.method === 'HEAD') {
    res.end()
    return 0
  }
  res.end(body)
  return body.length
}

/** A refusal written straight to a socket, for errors Node reports before a request object exists. */
export function rawRefusal(refusal: Refusal, requestId: string): string {
  const body = refusalBody(refusal).toString()
  return `HTTP/1.1 ${refusal.status} ${statusText(refusal.status)}\r\ncontent-type: application/json\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\nx-tollgate-error: ${refusal.code}\r\nx-request-id: ${requestId}\r\n` +
    `connection: close\r\n\r\n${body}`
}

function statusText(status: number): string {
  switch (status) {
    case 400: return 'Bad Request'
    case 408: return 'Request Timeout'
    case 413: return 'Payload Too Large'
    case 417: return 'Expectation Failed'
    case 431: return 'Request Header Fields Too Large'
    default: return 'Error'
  }
}
