// Garbage the way a large config load leaves it: in V8's old generation (large arrays go straight to the
// large-object space), where only a full collection frees it.
import v8 from 'node:v8'

export function heapUsed(): number {
  return v8.getHeapStatistics().used_heap_size
}

/** Allocates about `bytes` of arrays and drops them; returns how much the used heap grew meanwhile. */
export function leaveOldGarbage(bytes: number): number {
  const before = heapUsed()
  let junk: number[][] | null = []
  for (let n = 0; n < bytes; n += 400_000) junk.push(new Array<number>(100_000).fill(7))
  const grown = heapUsed() - before
  junk = null
  return grown
}

export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}
