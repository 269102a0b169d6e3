// Per-key state of the local limiters, bounded (README "Rate limiting", SPEC §10): one store per gateway
// holds the entries of all its local limiters, at most `limits.maxLimiterKeys` of them, in one
// least-recently-used list. A request touches its key (moves it to the head); a new key over the cap evicts
// the tail, the key idle the longest, so a key in use is never evicted in favour of idle ones. A key back to
// its full quota holds no state: the sweep (once a second, one unref()ed timer) drops every entry idle longer
// than its limiter's refill time, and a dropped key starts again with a full quota, which is what it had.
//
// Hot path: a lookup is one Map.get and four pointer writes; only a new key allocates (its entry).

/** The limiter an entry belongs to: it keeps the key -> entry map the store edits. */
export interface EntryOwner {
  /** After this long untouched an entry is back to a full quota (token bucket: burst / rate). */
  readonly idleAfterMs: number
  /** The store dropped `entry` (evicted or idle): forget its key. */
  forget(entry: KeyEntry): void
}

/** One key of one limiter. `a`, `b`, `c` are the algorithm's numbers (token-bucket.ts, sliding-window.ts). */
export class KeyEntry {
  a = 0
  b = 0
  c = 0
  /** performance.now() of the last request of this key (the LRU order). */
  touchedMs: number
  prev: KeyEntry | null = null
  next: KeyEntry | null = null
  constructor(readonly key: string, readonly owner: EntryOwner, nowMs: number) {
    this.touchedMs = nowMs
  }
}

const SWEEP_INTERVAL_MS = 1000

export class KeyStore {
  #head: KeyEntry | null = null
  #tail: KeyEntry | null = null
  #count = 0
  #maxKeys: number
  #timer: NodeJS.Timeout | null = null
  readonly #now: () => number

  /** `now`: the clock of the sweep timer (tests drive sweep() with their own clock instead). */
  constructor(maxKeys: number, now: () => number = () => performance.now()) {
    this.#maxKeys = maxKeys
    this.#now = now
  }

  /** Keys held now (tollgate_ratelimit_keys). */
  get size(): number {
    return this.#count
  }

  get maxKeys(): number {
    return this.#maxKeys
  }

  /** A reload changed limits.maxLimiterKeys: evict down to the new cap at once. */
  setMaxKeys(maxKeys: number): void {
    this.#maxKeys = maxKeys
    while (this.#count > maxKeys && this.#tail !== null) this.#drop(this.#tail)
  }

  /** A new entry for `key`, at the head; evicts the least recently used entry when the store is full. */
  add(key: string, owner: EntryOwner, nowMs: number): KeyEntry {
    if (this.#count >= this.#maxKeys && this.#tail !== null) this.#drop(this.#tail)
    const entry = new KeyEntry(key, owner, nowMs)
    const head = this.#head
    entry.next = head
    if (head !== null) head.prev = entry
    else this.#tail = entry
    this.#head = entry
    this.#count++
    if (this.#timer === null) this.#startSweeping()
    return entry
  }

  /** Hot path: `entry` was used at nowMs; it moves to the head. */
  touch(entry: KeyEntry, nowMs: number): void {
    entry.touchedMs = nowMs
    const head = this.#head
    if (head === entry) return
    const prev = entry.prev!
    const next = entry.next
    prev.next = next
    if (next !== null) next.prev = prev
    else this.#tail = prev
    entry.prev = null
    entry.next = head
    head!.prev = entry
    this.#head = entry
  }

  /** Removes one entry (its limiter went away, or the store drops it). */
  remove(entry: KeyEntry): void {
    const prev = entry.prev
    const next = entry.next
    if (prev !== null) prev.next = next
    else if (this.#head === entry) this.#head = next
    else return // not linked
    if (next !== null) next.prev = prev
    else this.#tail = prev
    entry.prev = null
    entry.next = null
    this.#count--
  }

  /**
   * Drops every entry idle longer than its limiter's refill time. Walks from the tail (the longest idle)
   * and stops at the first entry touched within the shortest refill time of the limiters it has seen, so
   * a sweep of a store of active keys reads few entries. Returns how many went.
   */
  sweep(nowMs: number): number {
    let dropped = 0
    let entry = this.#tail
    while (entry !== null) {
      const before = entry.prev
      const idleMs = nowMs - entry.touchedMs
      if (idleMs >= entry.owner.idleAfterMs) {
        this.#drop(entry)
        dropped++
      } else if (idleMs < this.#minIdleAfterMs) {
        break
      }
      entry = before
    }
    if (this.#count === 0) this.#stopSweeping()
    return dropped
  }

  #minIdleAfterMs = Infinity

  /** A limiter using this store: the sweep may stop early at entries younger than its refill time. */
  register(owner: EntryOwner): void {
    if (owner.idleAfterMs < this.#minIdleAfterMs) this.#minIdleAfterMs = owner.idleAfterMs
  }

  /** At shutdown: stops the sweep timer. */
  close(): void {
    this.#stopSweeping()
  }

  #drop(entry: KeyEntry): void {
    this.remove(entry)
    entry.owner.forget(entry)
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
