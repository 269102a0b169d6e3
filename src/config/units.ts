// Durations and sizes as written in routes.yaml (README.md "Configuration"). load.ts turns them into
// milliseconds and bytes once (schema.ts Duration and Size); nothing downstream parses them again.

const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/y
const MS_PER_UNIT: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** `250ms`, `5s`, `1.5s`, `1m`, `1h`, or a sum such as `1m30s`, in milliseconds. */
export function parseDurationMs(s: string): number {
  if (s.length === 0) throw new Error('invalid duration "": expected e.g. 250ms, 5s, 1m, 1h or 1m30s')
  let totalMs = 0
  DURATION_PART.lastIndex = 0
  while (DURATION_PART.lastIndex < s.length) {
    const start = DURATION_PART.lastIndex
    const part = DURATION_PART.exec(s)
    if (part === null) {
      throw new Error(`invalid duration "${s}" at "${s.slice(start)}": expected e.g. 250ms, 5s, 1m, 1h or 1m30s`)
    }
    totalMs += Number(part[1]) * (MS_PER_UNIT[part[2] ?? ''] ?? Number.NaN)
  }
  if (!Number.isFinite(totalMs)) throw new Error(`invalid duration "${s}": too large`)
  return totalMs
}

const SIZE = /^(\d+(?:\.\d+)?)\s*(B|b|KiB|MiB|GiB|kB|KB|MB|GB)?$/
const BYTES_PER_UNIT: Readonly<Record<string, number>> = {
  B: 1, b: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, kB: 1000, KB: 1000, MB: 1000 ** 2, GB: 1000 ** 3,
}

/** Integer bytes, or `512KiB`, `10MiB`, `1GiB` (powers of 1024), `100kB`/`100KB`, `MB`, `GB` (powers of 1000), `B`. */
export function parseSizeBytes(v: number | string): number {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`invalid size ${v}: expected a whole number of bytes >= 0`)
    return v
  }
  const m = SIZE.exec(v.trim())
  if (m === null) throw new Error(`invalid size "${v}": expected bytes or e.g. 512KiB, 10MiB, 1GiB, 100kB`)
  const exact = Number(m[1]) * (BYTES_PER_UNIT[m[2] ?? 'B'] ?? Number.NaN)
  const bytes = Math.round(exact)
  // Decimal fractions are not exact in binary (1.1 * 1000 = 1100.0000000000002), so allow rounding noise only.
  if (Math.abs(exact - bytes) > 1e-6) throw new Error(`invalid size "${v}": is not a whole number of bytes (${exact})`)
  if (!Number.isSafeInteger(bytes)) throw new Error(`invalid size "${v}": too large`)
  return bytes
}
