import { describe, expect, it } from 'vitest'
import { CLOSE_GOING_AWAY_TO_CLIENT, CLOSE_GOING_AWAY_TO_UPSTREAM, FrameCursor } from '../../src/proxy/websocket-frames.js'
import { upgradeResponseHeaders } from '../../src/proxy/websocket-forward.js'

/** One binary frame (RFC 6455 §5.2), masked as a client's or not as a server's; the payload bytes are 0x61. */
function frame(payloadLength: number, masked: boolean): Buffer {
  const lengthBytes = payloadLength < 126 ? 0 : payloadLength < 65536 ? 2 : 8
  const head = Buffer.alloc(2 + lengthBytes + (masked ? 4 : 0))
  head[0] = 0x82
  head[1] = (masked ? 0x80 : 0) | (lengthBytes === 0 ? payloadLength : lengthBytes === 2 ? 126 : 127)
  if (lengthBytes === 2) head.writeUInt16BE(payloadLength, 2)
  if (lengthBytes === 8) head.writeBigUInt64BE(BigInt(payloadLength), 2)
  if (masked) head.set([1, 2, 3, 4], 2 + lengthBytes)
  return Buffer.concat([head, Buffer.alloc(payloadLength, 0x61)])
}

describe('FrameCursor', () => {
  // Payload sizes that take each header form: 7-bit, 16-bit and 64-bit lengths, and an empty frame.
  const sizes = [0, 5, 125, 126, 300, 65535, 65536, 70000]

  for (const masked of [false, true]) {
    it(`finds every frame end, however the bytes are split (${masked ? 'masked' : 'unmasked'})`, () => {
      const frames = sizes.map((n) => frame(n, masked))
      const stream = Buffer.concat(frames)
      const ends = new Set<number>()
      let at = 0
      for (const f of frames) ends.add(at += f.length)
      for (const step of [1, 2, 3, 7, 13, 1000, stream.length]) {
        const cursor = new FrameCursor()
        const wrong: number[] = []
        for (let i = 0; i < stream.length; i += step) {
          const chunk = stream.subarray(i, Math.min(stream.length, i + step))
          if (cursor.feed(chunk, false) !== chunk.length || cursor.atBoundary !== ends.has(i + chunk.length)) wrong.push(i + chunk.length)
        }
        expect({ step, wrong }).toEqual({ step, wrong: [] })
      }
    })
  }

  it('stops at the first frame end when asked to', () => {
    const a = frame(10, false)
    const b = frame(200, false)
    const cursor = new FrameCursor()
    // Mid-frame: the first 5 bytes of a, then the rest of a and all of b in one chunk.
    expect(cursor.feed(a.subarray(0, 5), true)).toBe(5)
    expect(cursor.atBoundary).toBe(false)
    const rest = Buffer.concat([a.subarray(5), b])
    expect(cursor.feed(rest, true)).toBe(a.length - 5)
    expect(cursor.atBoundary).toBe(true)
  })

  it('writes close frames with status 1001, masked towards the upstream', () => {
    expect([...CLOSE_GOING_AWAY_TO_CLIENT]).toEqual([0x88, 0x02, 0x03, 0xe9])
    expect(CLOSE_GOING_AWAY_TO_UPSTREAM[1]! & 0x80).toBe(0x80)
    const cursor = new FrameCursor()
    cursor.feed(CLOSE_GOING_AWAY_TO_UPSTREAM, false)
    expect(cursor.atBoundary).toBe(true)
  })
})

describe('upgradeResponseHeaders', () => {
  it('keeps the handshake headers, drops hop-by-hop ones and those Connection lists, and sets its own', () => {
    const out = upgradeResponseHeaders([
      'Upgrade', 'websocket', 'Connection', 'Upgrade, x-secret', 'Sec-WebSocket-Accept', 'abc=',
      'Sec-WebSocket-Protocol', 'chat.v1', 'Keep-Alive', 'timeout=5', 'x-secret', '1', 'X-Request-Id', 'upstream-id',
      'Set-Cookie', 'a=b',
    ], 'gw-id')
    expect(out).toEqual([
      'Sec-WebSocket-Accept', 'abc=', 'Sec-WebSocket-Protocol', 'chat.v1', 'Set-Cookie', 'a=b',
      'Upgrade', 'websocket', 'Connection', 'Upgrade', 'x-request-id', 'gw-id',
    ])
  })
})
