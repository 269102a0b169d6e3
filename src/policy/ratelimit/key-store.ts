// Per-key state of the local limiters, bounded (README "Rate limiting"): one store per gateway
// holds the entries of all its local limiters, at most `limits.maxLimiterKeys` of them, in one list ordered
// as least recently used with a second chance (the CLOCK approximation of LRU): a request only stamps its
// key's entry with the time; a new key over the cap looks at the tail, and an entry used since it was linked
// there goes back to the head instead of being evicted. So a key in use is never evicted in favour of idle
// ones. A key back to its full quota holds no state: the sweep (once a second, one unref()ed timer) drops
// every entry idle longer than its limiter's refill time, and a dropped key starts again with a full quota,
// which is what it had.
//
// Hot path: a lookup is one Map.get and one field write; only a new key allocates (its entry). Moving the
// entry to the head on every use (exact LRU) touched the entry's two neighbours and the head, three random
// memory locations among 100,000 entries: measured 552 ns per decision over 100k live keys against 228 ns
// for the Map.get alone (bench/micro/limiter-bench.ts, a quiet moment of the 2-core VM).

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
  /** performance.now() of the last request of this key. */
  touchedMs: number
  /** When it was put at the head of the list. */
  linkedMs: number
  /** Used since it was put at the head: its second chance when it reaches the tail. */
  isUsed = false
  prev: KeyEntry | null = null
  next: KeyEntry | null = null
  constructor(readonly key: string, readonly owner: EntryOwner, nowMs: number) {
    this.touchedMs = nowMs
    this.linkedMs = nowMs
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
    const now = this.#now()
    while (this.#count > maxKeys) this.#evictOne(now)
  }

  /** A new entry for `key`, at the head; evicts the least recently used entry when the store is full. */
  add(key: string, owner: EntryOwner, nowMs: number): KeyEntry {
    if (this.#count >= this.#maxKeys) this.#evictOne(nowMs)
    const entry = new KeyEntry(key, owner, nowMs)
    this.#linkHead(entry)
    this.#count++
    if (this.#timer === null) this.#startSweeping()
    return entry
  }

  /** Hot path: `entry` was used at nowMs. It moves towards the head only when it reaches the tail. */
  touch(entry: KeyEntry, nowMs: number): void {
    if (nowMs > entry.touchedMs) entry.touchedMs = nowMs
    entry.isUsed = true
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
    // Entries nearer the head were linked later; once one was linked within the shortest refill time, the
    // rest were too. One relinked meanwhile (used again) is looked at again when it comes round.
    let left = this.#count
    while (entry !== null && left-- > 0) {
      const before = entry.prev
      if (nowMs - entry.touchedMs >= entry.owner.idleAfterMs) {
        this.#drop(entry)
        dropped++
      } else if (nowMs - entry.linkedMs < this.#minIdleAfterMs) {
        break
      } else if (entry.isUsed) {
        this.#relink(entry, nowMs)
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

  /** Evicts the tail, giving each entry used since it was linked a second chance at the head. */
  #evictOne(nowMs: number): void {
    for (let guard = this.#count; guard > 0; guard--) {
      const tail = this.#tail
      if (tail === null) return
      if (!tail.isUsed) return this.#drop(tail)
      this.#relink(tail, nowMs)
    }
    if (this.#tail !== null) this.#drop(this.#tail) // every entry had its chance: the oldest goes
  }

  #relink(entry: KeyEntry, nowMs: number): void {
    this.remove(entry)
    this.#count++ // remove() counted it out
    entry.linkedMs = nowMs > entry.touchedMs ? nowMs : entry.touchedMs
    entry.isUsed = false
    this.#linkHead(entry)
  }

  #linkHead(entry: KeyEntry): void {
    const head = this.#head
    entry.prev = null
    entry.next = head
    if (head !== null) head.prev = entry
    else this.#tail = entry
    this.#head = entry
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
