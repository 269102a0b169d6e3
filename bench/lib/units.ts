// Parsing and printing of the few units the bench deals in.

/** `10s`, `500ms`, `1m` or a bare number of seconds, in milliseconds. */
export function parseDurationMs(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim())
  if (match === null) throw new Error(`duration: expected e.g. 10s, 500ms, 1m; got "${text}"`)
  const value = Number(match[1])
  const unit = match[2] ?? 's'
  return unit === 'ms' ? value : unit === 's' ? value * 1000 : value * 60_000
}

/** wrk's latency figures (`626.00us`, `1.19ms`, `2.01s`) in milliseconds. */
export function parseWrkLatencyMs(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(us|ms|s|m)$/.exec(text.trim())
  if (match === null) throw new Error(`wrk latency: cannot read "${text}"`)
  const value = Number(match[1])
  const unit = match[2]
  return unit === 'us' ? value / 1000 : unit === 'ms' ? value : unit === 's' ? value * 1000 : value * 60_000
}

/** `75,700` */
export const formatCount = (n: number): string => Math.round(n).toLocaleString('en-US')

/** Milliseconds with two decimals, or three below 0.1 ms. */
export const formatMs = (ms: number): string => (ms < 0.1 ? ms.toFixed(3) : ms.toFixed(2))

/** `1.07` */
export const formatRatio = (r: number): string => r.toFixed(2)

/** Kibibytes as mebibytes with one decimal. */
export const formatMiB = (kib: number): string => (kib / 1024).toFixed(1)

/** Microseconds with two decimals: a limiter's cost per request is a fraction of one. */
export const formatUs = (us: number): string => us.toFixed(2)
