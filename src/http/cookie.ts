// One cookie's value from a Cookie header (RFC 6265 §5.4: `name=value` pairs joined by "; "), for split
// rules and sticky keys (src/upstream/traffic-split.ts). Hot path: scans the header in place and allocates
// only the returned value; the value is raw (no percent-decoding, quotes kept), as the client sent it.

/** The first value of cookie `name` in `header` (one Cookie header, or several joined by "; "), or null. */
export function cookieValue(header: string | undefined, name: string): string | null {
  if (header === undefined) return null
  const n = name.length
  let i = 0
  while (i < header.length) {
    // Skip the separators before a pair: "; " in the standard form, also a bare ";" or spaces.
    while (i < header.length && (header.charCodeAt(i) === 0x20 || header.charCodeAt(i) === 0x3b)) i++
    let end = header.indexOf(';', i)
    if (end < 0) end = header.length
    if (header.startsWith(name, i) && header.charCodeAt(i + n) === 0x3d) { // '='
      let stop = end
      while (stop > i + n + 1 && header.charCodeAt(stop - 1) === 0x20) stop--
      return header.slice(i + n + 1, stop)
    }
    i = end + 1
  }
  return null
}
