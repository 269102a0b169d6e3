import { describe, expect, it } from 'vitest'
import { HeapTrimmer, LARGE_GROWTH_BYTES } from '../../src/telemetry/heap-trim.js'
import { heapUsed, leaveOldGarbage, nextTurn } from '../helpers/heap.js'

const MiB = 2 ** 20

/** A trimmer that has just collected, so that the next decision depends on the garbage a test makes. */
async function primed(): Promise<HeapTrimmer> {
  const trimmer = new HeapTrimmer()
  leaveOldGarbage(LARGE_GROWTH_BYTES + 8 * MiB)
  trimmer.afterLoad()
  await nextTurn()
  expect(trimmer.collections).toBe(1)
  return trimmer
}

describe('HeapTrimmer', () => {
  it('runs one full collection on the next turn after a load that left much garbage, and the heap shrinks', async () => {
    const trimmer = await primed()
    const grown = leaveOldGarbage(LARGE_GROWTH_BYTES + 16 * MiB)
    expect(grown).toBeGreaterThan(LARGE_GROWTH_BYTES) // still counted: nothing collected it yet
    const withGarbage = heapUsed()
    trimmer.afterLoad()
    trimmer.afterLoad() // a second load in the same turn asks for nothing more
    expect(trimmer.collections).toBe(1) // not in the load's own turn
    await nextTurn()
    expect(trimmer.collections).toBe(2)
    expect(withGarbage - heapUsed()).toBeGreaterThan(LARGE_GROWTH_BYTES)
  })

  it('does nothing after a load that grew the heap little', async () => {
    const trimmer = await primed()
    leaveOldGarbage(4 * MiB)
    trimmer.afterLoad()
    await nextTurn()
    expect(trimmer.collections).toBe(1)
  })
})
