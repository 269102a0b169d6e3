// node:http2 client helpers for the HTTP/2 tests: a session closed when the test finishes, and one request
// with its status, headers, body and trailers.
import http2, { type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders, type SecureClientSessionOptions } from 'node:http2'
import { onTestFinished } from 'vitest'

export interface H2Response {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly body: string
  readonly trailers: IncomingHttpHeaders | null
}

/** A session to `url` (https:// or http:// for h2c), ready once connected; destroyed when the test finishes. */
export async function connectH2(url: string, options: SecureClientSessionOptions = {}): Promise<ClientHttp2Session> {
  const session = http2.connect(url, options)
  session.on('error', () => undefined) // a GOAWAY or reset in a test shows on its streams
  onTestFinished(() => { session.destroy() })
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve())
    session.once('error', reject)
  })
  return session
}

/** One request; `body` is written and the stream ended (a string/Buffer, or chunks written one by one). */
export function h2Request(session: ClientHttp2Session, headers: OutgoingHttpHeaders, body?: string | Buffer | Array<string | Buffer>): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined })
    let status = 0
    let responseHeaders: IncomingHttpHeaders = {}
    let trailers: IncomingHttpHeaders | null = null
    const chunks: Buffer[] = []
    stream.setTimeout(10_000, () => stream.close(http2.constants.NGHTTP2_CANCEL))
    stream.on('response', (h) => {
      status = Number(h[':status'])
      responseHeaders = h
    })
    stream.on('trailers', (t) => { trailers = t })
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('end', () => resolve({ status, headers: responseHeaders, body: Buffer.concat(chunks).toString(), trailers }))
    stream.on('error', reject)
    if (body !== undefined) {
      for (const part of Array.isArray(body) ? body : [body]) stream.write(part)
      stream.end()
    }
  })
}
