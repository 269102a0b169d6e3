// Back-off between tries, exponential with jitter so that many clients that failed together do not retry
// together (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015). `attempt` counts from 0; the
// ceiling is min(capMs, baseMs x 2^attempt).

/** Full jitter: uniform in [0, ceiling). For request retries, where waiting 0 is fine. */
export function fullJitterMs(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  return random() * ceilingMs(attempt, baseMs, capMs)
}

/** Equal jitter: uniform in [ceiling / 2, ceiling). For reconnects, which should always wait a little. */
export function equalJitterMs(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const ceiling = ceilingMs(attempt, baseMs, capMs)
  return ceiling / 2 + random() * (ceiling / 2)
}

function ceilingMs(attempt: number, baseMs: number, capMs: number): number {
  return Math.min(capMs, baseMs * 2 ** Math.max(0, attempt))
}
