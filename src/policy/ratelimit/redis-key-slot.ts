// Redis Cluster key slot, so redis-store.ts can put only keys of one slot into one script call (a call
// whose keys span slots fails with CROSSSLOT). The rule, from the Redis Cluster specification: CRC16
// (XMODEM: polynomial 0x1021, initial value 0) of the key's bytes, modulo 16384; when the key has a '{'
// followed later by a '}' with at least one byte between them, only those bytes (the hash tag) count.
// Written here rather than importing ioredis's untyped dependency cluster-key-slot; the cluster test checks
// it against CLUSTER KEYSLOT.

const SLOTS = 16384

// One entry per byte value: the CRC of that byte shifted through the polynomial.
const TABLE = new Uint16Array(256)
for (let i = 0; i < 256; i++) {
  let crc = i << 8
  for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  TABLE[i] = crc
}

/** Hot path in cluster mode: once per decision. Allocation-free for ASCII hash tags. */
export function keySlot(key: string): number {
  let start = 0
  let end = key.length
  const open = key.indexOf('{')
  if (open !== -1) {
    const close = key.indexOf('}', open + 1)
    // '{' and '}' are ASCII and UTF-8 never reuses ASCII bytes inside a multi-byte character, so searching
    // the string finds the same tag as searching its bytes.
    if (close > open + 1) {
      start = open + 1
      end = close
    }
  }
  let crc = 0
  for (let i = start; i < end; i++) {
    const c = key.charCodeAt(i)
    if (c >= 0x80) return slotOfBytes(Buffer.from(key.slice(start, end), 'utf8'))
    crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ c) & 0xff]!
  }
  return crc % SLOTS
}

function slotOfBytes(bytes: Uint8Array): number {
  let crc = 0
  for (const b of bytes) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ b) & 0xff]!
  return crc % SLOTS
}
