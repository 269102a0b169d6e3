// Per-key state of the local limiters, bounded (README "Rate limiting"): one store per gateway holds the
// keys of all its local limiters, at most `limits.maxLimiterKeys` of them, in one list ordered as least
// recently used with a second chance (the CLOCK approximation of LRU): a request only stamps its key with
// the time; a new key over the cap looks at the tail, and a key used since it was linked there goes back to
// the head instead of being evicted. So a key in use is never evicted in favour of idle ones. A key back to
// its full quota holds no state: the sweep (once a second, one unref()ed timer) drops every key idle longer
// than its limiter's refill time, and a dropped key starts again with a full quota, which is what it had.
//
// Layout, for the hot path. The store is one open-addressing hash table (linear probing, at most half full)
// whose positions are the keys' records: RECORD doubles (64 bytes, one cache line) in one Float64Array,
// `numbers`, at offset `at` = position * RECORD. A record holds the algorithm's numbers (A, B, C), the time
// of the last request, the limiter, and the key's characters when it has at most 26 Latin-1 ones (IPv4
// addresses, IPv6 /64 keys, most header values); a longer key compares with its string in #longKeys. So a
// decision reads one place in memory, the key's record, and the LRU links (read by eviction and sweep
// only) live apart. Before, a decision read a Map<string, KeyEntry> (its bucket, its entry, the key to
// compare, often a chained neighbour's), then the KeyEntry object and the heap boxes V8 keeps its
// non-integer fields in: over 100,000 live keys each is a likely cache miss. Measured, one token-bucket
// decision over 100,000 live keys (bench/micro/limiter-bench.ts, sets of 5-6 interleaved runs of each on the
// 2-core VM with other jobs running; medians): at load average 5, 426 ns with the Map against 244 ns with
// this table (wall; CPU 354 against 244); at load 7-11, CPU 600 against 415 ns in one set, 1,115 against
// 588 in another. A separate index of slot numbers in front of the records (two reads per lookup)
// measured no better than the Map; a table up to 4/5 full instead of 1/2, about the same per lookup (and
// half the memory), but a new key then scans a long run of records. Memory: 100,000 keys take 16 MiB of table (at most half full)
// and 2 MiB beside it; RSS of a process holding them, +36 MiB against +26 MiB with the Map.
//
// The hash is FNV-1a with a random seed per store, then mixed (murmur3's finaliser), so that clients cannot
// choose keys that pile up in one part of the table. A record may move (a deletion shifts the records
// after it back; growth rehashes them all): `generation` counts such changes, and a caller holding an `at`
// across an add() checks it.
import { performance } from 'node:perf_hooks'

/** The algorithm's numbers of a key, at numbers[at + A] etc. (token-bucket.ts, sliding-window.ts). */
export const A = 0
export const B = 1
export const C = 2
/** performance.now() of the last request of the key. */
const TOUCHED = 3
/** Doubles per record (64 bytes): 4 numbers, the limiter, 2 bytes of flags, 26 of key. */
export const RECORD = 8
const INTS = RECORD * 2
const BYTES = RECORD * 8
/** The limiter's id + 1 (register()), 0 for an empty position: ints[position * INTS + OWNER]. */
const OWNER = 8
/** Bytes, at bytes[position * BYTES + ...]: the key's length when its characters are inline, else LONG. */
const LENGTH = 36
const LONG = 255
/** 1: used since it was put at the head: its second chance when it reaches the tail. */
const USED = 37
/** The key's characters. */
const KEY = 38
const INLINE_CHARS = BYTES - KEY
/** Off the hot path, by position, in #links: the LRU list (positions, -1 for none). */
const PREV = 0
const NEXT = 1
const NONE = -1

const SWEEP_INTERVAL_MS = 1000
/** Positions of a new store; it doubles when half full, and halves in a sweep that leaves it less than 1/8 full. */
const FIRST_POSITIONS = 128

export class KeyStore {
  /** The records; replaced when the store grows, so read it after add(). */
  numbers: Float64Array
  #ints: Int32Array
  #bytes: Uint8Array
  /** By position: the LRU list's links (2 int32 each) and when the key was put at the head. */
  #links: Int32Array
  #linkedMs: Float64Array
  /** By position: the keys whose characters are not inline. */
  #longKeys: Array<string | null>
  #mask: number
  #head = NONE
  #tail = NONE
  #count = 0
  #maxKeys: number
  #timer: NodeJS.Timeout | null = null
  readonly #now: () => number
  readonly #seed: number
  /** By limiter id: its refill time and how many keys it holds. Ids are never reused. */
  readonly #idleAfterMs: number[] = []
  readonly #keysOf: number[] = []
  #minIdleAfterMs = Infinity
  /** A position the list walk of sweep()/unregister() holds across a #drop(): followed when its record moves. */
  #held = NONE
  /** Counts drops and moves of records: an `at` taken earlier still holds its key while this is unchanged. */
  generation = 0

  /** `now`: the clock of the sweep timer (tests drive sweep() with their own clock instead). */
  constructor(maxKeys: number, now: () => number = () => performance.now()) {
    this.#maxKeys = maxKeys
    this.#now = now
    this.#seed = (Math.random() * 0x100000000) | 0
    this.numbers = new Float64Array(FIRST_POSITIONS * RECORD)
    this.#ints = new Int32Array(this.numbers.buffer)
    this.#bytes = new Uint8Array(this.numbers.buffer)
    this.#links = new Int32Array(FIRST_POSITIONS * 2)
    this.#linkedMs = new Float64Array(FIRST_POSITIONS)
    this.#longKeys = new Array<string | null>(FIRST_POSITIONS).fill(null)
    this.#mask = FIRST_POSITIONS - 1
  }

  /** Keys held now (tollgate_ratelimit_keys). */
  get size(): number {
    return this.#count
  }

  get maxKeys(): number {
    return this.#maxKeys
  }

  /** A limiter using this store: its id. The sweep may stop early at keys younger than its refill time. */
  register(idleAfterMs: number): number {
    if (idleAfterMs < this.#minIdleAfterMs) this.#minIdleAfterMs = idleAfterMs
    this.#idleAfterMs.push(idleAfterMs)
    this.#keysOf.push(0)
    return this.#idleAfterMs.length - 1
  }

  /** Keys of one limiter. */
  keysOf(owner: number): number {
    return this.#keysOf[owner] ?? 0
  }

  /** The limiter went away (reload): its keys leave the store. Walks the whole list: a reload, not a request. */
  unregister(owner: number): void {
    let p = this.#head
    while (p !== NONE && this.#keysOf[owner]! > 0) {
      this.#held = this.#links[2 * p + NEXT]!
      if (this.#ints[p * INTS + OWNER] === owner + 1) this.#drop(p)
      p = this.#held
    }
    this.#held = NONE
  }

  /** A reload changed limits.maxLimiterKeys: evict down to the new cap at once. */
  setMaxKeys(maxKeys: number): void {
    this.#maxKeys = maxKeys
    const now = this.#now()
    while (this.#count > maxKeys) this.#evictOne(now)
  }

  /** Hot path: the record offset of `owner`'s `key`, or -1. */
  find(owner: number, key: string): number {
    const mask = this.#mask
    const ints = this.#ints
    const tag = owner + 1
    // At most half full, so an empty position ends every probe.
    for (let p = this.#hashOf(owner, key) & mask; ; p = (p + 1) & mask) {
      const at = p * RECORD
      const o = ints[2 * at + OWNER]!
      if (o === 0) return NONE
      if (o === tag && this.#isKey(at, key)) return at
    }
  }

  /**
   * A new key (find() said -1), at the head of the list; evicts the least recently used key when the store
   * is full. Returns its record offset; `numbers` may have been replaced, and other records moved.
   */
  add(owner: number, key: string, nowMs: number): number {
    if (this.#count >= this.#maxKeys) this.#evictOne(nowMs)
    if (2 * (this.#count + 1) > this.#mask + 1) this.#resize(2 * (this.#mask + 1))
    const mask = this.#mask
    const ints = this.#ints
    let p = this.#hashOf(owner, key) & mask
    while (ints[p * INTS + OWNER] !== 0) p = (p + 1) & mask
    const at = p * RECORD
    const n = this.numbers
    const bytes = this.#bytes
    n[at + A] = 0
    n[at + B] = 0
    n[at + C] = 0
    n[at + TOUCHED] = nowMs
    ints[p * INTS + OWNER] = owner + 1
    const base = p * BYTES
    bytes[base + USED] = 0
    if (isInline(key)) {
      for (let i = 0; i < key.length; i++) bytes[base + KEY + i] = key.charCodeAt(i)
      bytes[base + LENGTH] = key.length
    } else {
      bytes[base + LENGTH] = LONG
      this.#longKeys[p] = key
    }
    this.#linkedMs[p] = nowMs
    this.#linkHead(p)
    this.#count++
    this.#keysOf[owner]!++
    if (this.#timer === null) this.#startSweeping()
    return at
  }

  /** Hot path: the key at `at` was used at nowMs. It moves towards the head only when it reaches the tail. */
  touch(at: number, nowMs: number): void {
    const n = this.numbers
    if (nowMs > n[at + TOUCHED]!) n[at + TOUCHED] = nowMs
    this.#bytes[at * 8 + USED] = 1
  }

  /**
   * Drops every key idle longer than its limiter's refill time. Walks from the tail (the longest idle) and
   * stops at the first key linked within the shortest refill time of the limiters, so a sweep of a store of
   * active keys reads few records. Returns how many went.
   */
  sweep(nowMs: number): number {
    let dropped = 0
    let p = this.#tail
    // Keys nearer the head were linked later; once one was linked within the shortest refill time, the
    // rest were too. One relinked meanwhile (used again) is looked at again when it comes round.
    let left = this.#count
    while (p !== NONE && left-- > 0) {
      this.#held = this.#links[2 * p + PREV]!
      if (nowMs - this.numbers[p * RECORD + TOUCHED]! >= this.#idleAfterMs[this.#ints[p * INTS + OWNER]! - 1]!) {
        this.#drop(p)
        dropped++
      } else if (nowMs - this.#linkedMs[p]! < this.#minIdleAfterMs) {
        break
      } else if (this.#bytes[p * BYTES + USED] === 1) {
        this.#relink(p, nowMs)
      }
      p = this.#held
    }
    this.#held = NONE
    if (this.#count === 0) this.#stopSweeping()
    // After a crowd of clients went: give the memory back, down to a table at most a quarter full.
    let positions = this.#mask + 1
    while (positions > FIRST_POSITIONS && 8 * this.#count < positions) positions /= 2
    if (positions < this.#mask + 1) this.#resize(positions)
    return dropped
  }

  /** At shutdown: stops the sweep timer. */
  close(): void {
    this.#stopSweeping()
  }

  // ---- the table ----

  /** The hash of a key: FNV-1a over its UTF-16 code units, seeded, mixed. #hashAt() must agree with it. */
  #hashOf(owner: number, key: string): number {
    let h = this.#seed ^ Math.imul(owner + 1, 0x9e3779b1)
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193)
    return mix(h)
  }

  /** The hash of the key held at position `p` (moves, growth). */
  #hashAt(p: number): number {
    const owner = this.#ints[p * INTS + OWNER]! - 1
    const bytes = this.#bytes
    const base = p * BYTES
    const length = bytes[base + LENGTH]!
    if (length === LONG) return this.#hashOf(owner, this.#longKeys[p]!)
    let h = this.#seed ^ Math.imul(owner + 1, 0x9e3779b1)
    for (let i = 0; i < length; i++) h = Math.imul(h ^ bytes[base + KEY + i]!, 0x01000193)
    return mix(h)
  }

  #isKey(at: number, key: string): boolean {
    const bytes = this.#bytes
    const base = at * 8
    const length = bytes[base + LENGTH]!
    if (length === LONG) return this.#longKeys[at / RECORD] === key
    if (key.length !== length) return false
    for (let i = 0; i < length; i++) if (key.charCodeAt(i) !== bytes[base + KEY + i]) return false
    return true
  }

  /**
   * Empties position `i`: the records after it in its probe run that may not stay where they are move back
   * into the hole (no tombstones), with their list links.
   */
  #vacate(i: number): void {
    const mask = this.#mask
    const ints = this.#ints
    for (let j = (i + 1) & mask; ints[j * INTS + OWNER] !== 0; j = (j + 1) & mask) {
      const home = this.#hashAt(j) & mask
      // The record at j stays when its home is in the cyclic range (i, j]; else it moves into the hole.
      const stays = i <= j ? i < home && home <= j : i < home || home <= j
      if (stays) continue
      this.#move(j, i)
      i = j
    }
    ints[i * INTS + OWNER] = 0
    this.#longKeys[i] = null
  }

  /** The record at `from` moves to the empty position `to`. */
  #move(from: number, to: number): void {
    this.numbers.copyWithin(to * RECORD, from * RECORD, from * RECORD + RECORD)
    this.#longKeys[to] = this.#longKeys[from]!
    this.#linkedMs[to] = this.#linkedMs[from]!
    const links = this.#links
    const prev = links[2 * from + PREV]!
    const next = links[2 * from + NEXT]!
    links[2 * to + PREV] = prev
    links[2 * to + NEXT] = next
    if (prev !== NONE) links[2 * prev + NEXT] = to
    else this.#head = to
    if (next !== NONE) links[2 * next + PREV] = to
    else this.#tail = to
    if (this.#held === from) this.#held = to
    this.generation++
  }

  /** A table of `positions`: every record rehashed, in list order from the tail, the list rebuilt the same. */
  #resize(positions: number): void {
    const old = { numbers: this.numbers, links: this.#links, linkedMs: this.#linkedMs, longKeys: this.#longKeys, tail: this.#tail }
    const oldBytes = this.#bytes
    const oldInts = this.#ints
    this.numbers = new Float64Array(positions * RECORD)
    this.#ints = new Int32Array(this.numbers.buffer)
    this.#bytes = new Uint8Array(this.numbers.buffer)
    this.#links = new Int32Array(positions * 2)
    this.#linkedMs = new Float64Array(positions)
    this.#longKeys = new Array<string | null>(positions).fill(null)
    this.#mask = positions - 1
    this.#head = NONE
    this.#tail = NONE
    const mask = this.#mask
    for (let q = old.tail; q !== NONE; q = old.links[2 * q + PREV]!) {
      const owner = oldInts[q * INTS + OWNER]! - 1
      const length = oldBytes[q * BYTES + LENGTH]!
      const key = length === LONG ? old.longKeys[q]! : latin1(oldBytes, q * BYTES + KEY, length)
      let p = this.#hashOf(owner, key) & mask
      while (this.#ints[p * INTS + OWNER] !== 0) p = (p + 1) & mask
      this.numbers.set(old.numbers.subarray(q * RECORD, q * RECORD + RECORD), p * RECORD)
      this.#longKeys[p] = old.longKeys[q]!
      this.#linkedMs[p] = old.linkedMs[q]!
      this.#linkHead(p)
    }
    this.generation++
  }

  // ---- the list ----

  /** Evicts the tail, giving each key used since it was linked a second chance at the head. */
  #evictOne(nowMs: number): void {
    for (let guard = this.#count; guard > 0; guard--) {
      const tail = this.#tail
      if (tail === NONE) return
      if (this.#bytes[tail * BYTES + USED] === 0) return this.#drop(tail)
      this.#relink(tail, nowMs)
    }
    if (this.#tail !== NONE) this.#drop(this.#tail) // every key had its chance: the oldest goes
  }

  #relink(p: number, nowMs: number): void {
    this.#unlink(p)
    const touched = this.numbers[p * RECORD + TOUCHED]!
    this.#linkedMs[p] = nowMs > touched ? nowMs : touched
    this.#bytes[p * BYTES + USED] = 0
    this.#linkHead(p)
  }

  #unlink(p: number): void {
    const links = this.#links
    const prev = links[2 * p + PREV]!
    const next = links[2 * p + NEXT]!
    if (prev !== NONE) links[2 * prev + NEXT] = next
    else this.#head = next
    if (next !== NONE) links[2 * next + PREV] = prev
    else this.#tail = prev
  }

  #linkHead(p: number): void {
    const links = this.#links
    const head = this.#head
    links[2 * p + PREV] = NONE
    links[2 * p + NEXT] = head
    if (head !== NONE) links[2 * head + PREV] = p
    else this.#tail = p
    this.#head = p
  }

  /** The key at position `p` leaves: out of the list and the table. */
  #drop(p: number): void {
    this.generation++
    this.#unlink(p)
    this.#keysOf[this.#ints[p * INTS + OWNER]! - 1]!--
    this.#count--
    this.#vacate(p)
  }

  #startSweeping(): void {
    this.#timer = setInterval(() => this.sweep(this.#now()), SWEEP_INTERVAL_MS)
    this.#timer.unref()
  }

  #stopSweeping(): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
  }
}

/** murmur3's 32-bit finaliser: every bit of the FNV state reaches the low bits the table indexes with. */
function mix(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  return h ^ (h >>> 16)
}

/** At most INLINE_CHARS characters, each one byte (Latin-1): kept in the record. */
function isInline(key: string): boolean {
  if (key.length > INLINE_CHARS) return false
  for (let i = 0; i < key.length; i++) if (key.charCodeAt(i) > 0xff) return false
  return true
}

/** The inline key at bytes[start, start + length) as a string (growth only). */
function latin1(bytes: Uint8Array, start: number, length: number): string {
  return String.fromCharCode(...bytes.subarray(start, start + length))
}
