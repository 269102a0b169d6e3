// Summaries across repetitions. Repetitions are few (3 by default), so the median is the figure and
// min–max shows the spread; no means, no standard deviations.

export interface Spread {
  readonly median: number
  readonly min: number
  readonly max: number
}

export function spread(values: readonly number[]): Spread {
  if (values.length === 0) throw new Error('spread of no values')
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]! }
}

/** The value at quantile q (0..1) of an ascending array, nearest rank. */
export function quantile(sortedAscending: Float64Array | readonly number[], q: number): number {
  const n = sortedAscending.length
  if (n === 0) return 0
  const rank = Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))
  return sortedAscending[rank]!
}
