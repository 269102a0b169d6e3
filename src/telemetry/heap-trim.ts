// After a large config load, one full garbage collection instead of leaving the load's garbage in the heap.
//
// Loading a 10k-route file (YAML parse, validation, table build) promotes its temporaries to V8's old
// generation, and the request path allocates too little there for V8 to ever collect them: 6 s after start,
// 120 MiB of heap was in use, 41 MiB after a full collection. Every young-generation collection (scavenge,
// ~30 per second under load) pays for the bigger heap: 1.03 ms per scavenge against 0.78 ms after a full
// collection (node --trace-gc, 5 s of load like bench scenario routes-10k, 3 runs each), and each one is a
// pause that requests in flight wait out.
//
// So after a load that left the heap more than LARGE_GROWTH_BYTES above its size after the last collection,
// one full collection runs on the next turn of the event loop (the reload's log lines and swap come first).
// A small config never triggers it: loading the bundled example grows the heap by well under a MiB.
import v8 from 'node:v8'
import vm from 'node:vm'

export const LARGE_GROWTH_BYTES = 32 * 2 ** 20

export class HeapTrimmer {
  #usedAfterLast = 0
  #pending = false
  #collect: (() => void) | null | undefined = undefined
  /** Full collections run so far (tests read it). */
  collections = 0

  /** A config load just finished (applied or not: parsing made the garbage either way). */
  afterLoad(): void {
    if (this.#pending) return
    if (v8.getHeapStatistics().used_heap_size - this.#usedAfterLast < LARGE_GROWTH_BYTES) return
    this.#pending = true
    setImmediate(() => {
      this.#pending = false
      this.#collectNow()
    })
  }

  #collectNow(): void {
    const collect = (this.#collect ??= fullCollection())
    if (collect === null) return
    collect()
    this.collections++
    this.#usedAfterLast = v8.getHeapStatistics().used_heap_size
  }
}

/**
 * V8's gc(): global when node runs with --expose-gc, otherwise made available the way jest's leak detector
 * does (the flag, then a new context, which gets the function). null if V8 refuses.
 */
function fullCollection(): (() => void) | null {
  const existing: unknown = Reflect.get(globalThis, 'gc')
  if (typeof existing === 'function') return existing as () => void
  try {
    v8.setFlagsFromString('--expose-gc')
    const gc: unknown = vm.runInNewContext('gc')
    return typeof gc === 'function' ? (gc as () => void) : null
  } catch {
    return null
  }
}
