// Where WebSocket frames end in a relayed byte stream (RFC 6455 §5.2), without buffering or decoding them:
// the tunnel (websocket-tunnel.ts) relays bytes as they come, and only on shutdown needs to put a close
// frame of its own between two frames. The cursor reads each frame header (2 to 14 bytes) and skips the
// payload by its length, so its cost is per frame header, not per payload byte.
//
// Invariant: atBoundary is true exactly when every byte fed so far belongs to complete frames.

/** A server-to-client close frame, status 1001 "going away" (RFC 6455 §5.5.1, §7.4.1), unmasked. */
export const CLOSE_GOING_AWAY_TO_CLIENT: Buffer = Buffer.from([0x88, 0x02, 0x03, 0xe9])
/**
 * The same towards the upstream: client-to-server frames must be masked (§5.3). The zero mask is valid; the
 * mask protects browsers' connections through caching intermediaries, which this hop is not.
 */
export const CLOSE_GOING_AWAY_TO_UPSTREAM: Buffer = Buffer.from([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe9])

export class FrameCursor {
  /** Payload bytes of the current frame still to come. */
  #payloadLeft = 0
  /** Header bytes of the next frame seen so far (0: none). */
  #headerLength = 0
  /** Header bytes needed: 2 until the second byte tells the real size. */
  #headerNeed = 2
  readonly #header = Buffer.alloc(14)

  get atBoundary(): boolean {
    return this.#payloadLeft === 0 && this.#headerLength === 0
  }

  /**
   * Advances over `chunk`. With `stopAtBoundary`, stops at the first frame end it reaches and returns its
   * offset (what follows belongs to later frames); otherwise returns chunk.length.
   */
  feed(chunk: Buffer, stopAtBoundary: boolean): number {
    const n = chunk.length
    let i = 0
    while (i < n) {
      if (this.#payloadLeft > 0) {
        const take = Math.min(this.#payloadLeft, n - i)
        this.#payloadLeft -= take
        i += take
        if (stopAtBoundary && this.#payloadLeft === 0) return i
        continue
      }
      const header = this.#header
      header[this.#headerLength++] = chunk[i++]!
      if (this.#headerLength === 2) {
        const len7 = header[1]! & 0x7f
        this.#headerNeed = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + ((header[1]! & 0x80) !== 0 ? 4 : 0)
      }
      if (this.#headerLength < this.#headerNeed) continue
      const len7 = header[1]! & 0x7f
      this.#payloadLeft = len7 === 126 ? header.readUInt16BE(2)
        : len7 === 127 ? header.readUInt32BE(2) * 0x1_0000_0000 + header.readUInt32BE(6)
          : len7
      this.#headerLength = 0
      this.#headerNeed = 2
      if (stopAtBoundary && this.#payloadLeft === 0) return i
    }
    return n
  }
}
