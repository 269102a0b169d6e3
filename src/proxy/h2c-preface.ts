// h2c with prior knowledge (RFC 9113 §3.3) on the plaintext listener, beside HTTP/1.1 on the same port
// (README "HTTP/2", `http2: h2c`): the first bytes of a connection say which it speaks. An HTTP/2 client
// starts with the 24-byte preface `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`; no HTTP/1.1 request line does (`PRI`
// is no method a route answers, and HTTP/2.0 is no HTTP/1 version). The bytes read to decide are put back
// (unshift) before the connection is handed over: node:http2 reads what a socket already buffered
// (nodejs/node#35475), and node:http parses the buffered bytes from its 'data' listener.
//
// Envoy does the same with `codec_type: AUTO`; Go's h2c handler (Traefik's plaintext entry points) too.
// The HTTP/1.1 `Upgrade: h2c` dance (RFC 7540 §3.2) is not offered: RFC 9113 §3.1 deprecated it, and the
// header is dropped like every Upgrade outside a WebSocket route.
import type { Socket } from 'node:net'

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')

/**
 * Reads until the first bytes decide, then calls `h2` or `h1` with the socket, the bytes read put back.
 * A connection that sends nothing for `timeoutMs` is closed (HTTP/1.1's headersTimeout has not started yet).
 */
export function sniffPreface(socket: Socket, timeoutMs: number, h2: (socket: Socket) => void, h1: (socket: Socket) => void): void {
  let seen: Buffer | null = null
  const onData = (chunk: Buffer): void => {
    seen = seen === null ? chunk : Buffer.concat([seen, chunk])
    const n = Math.min(seen.length, PREFACE.length)
    const isPrefix = seen.subarray(0, n).equals(PREFACE.subarray(0, n))
    if (isPrefix && n < PREFACE.length) return // could still be the preface: read on
    socket.off('data', onData)
    socket.off('error', onError)
    socket.setTimeout(0)
    socket.pause()
    socket.unshift(seen)
    if (isPrefix) {
      h2(socket) // stays paused: http2 reads the buffered bytes and then the handle itself
    } else {
      h1(socket)
      socket.resume()
    }
  }
  // Until a server owns it, a reset must not become an unhandled 'error'.
  const onError = (): void => { socket.destroy() }
  socket.on('error', onError)
  socket.on('data', onData)
  socket.setTimeout(timeoutMs, () => socket.destroy())
}
