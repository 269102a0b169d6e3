import { describe, expect, it } from 'vitest'
import { buildResponseHeaders, countString, pushQuotaHeaders, type ResponseBody } from '../../src/proxy/response-headers.js'

/** undici hands the response headers over as raw [name, value, ...] buffers. */
function raw(...pairs: string[]): Buffer[] {
  return pairs.map((s) => Buffer.from(s, 'latin1'))
}

function build(headers: Buffer[], close = false): { out: string[]; body: ResponseBody } {
  const body: ResponseBody = { bytesLeft: 123 }
  return { out: buildResponseHeaders(headers, 'rid', close, body), body }
}

describe('buildResponseHeaders', () => {
  it('drops a bare Connection keep-alive or close in any case, and nothing else', () => {
    for (const value of ['keep-alive', 'Keep-Alive', 'KEEP-ALIVE', 'close', 'Close']) {
      const { out } = build(raw('Content-Type', 'text/plain', 'Connection', value, 'X-Up', '1'))
      expect(out).toEqual(['content-type', 'text/plain', 'x-up', '1', 'x-request-id', 'rid'])
    }
  })

  it('still drops the headers a Connection value lists, beside keep-alive or close', () => {
    const { out } = build(raw('Connection', 'close, X-Secret', 'X-Secret', 'leak', 'X-Kept', 'yes', 'Keep-Alive', 'timeout=5'))
    expect(out).toEqual(['x-kept', 'yes', 'x-request-id', 'rid'])
  })

  it('does not take a same-length value that is not keep-alive or close for one', () => {
    // 10 and 5 bytes, like keep-alive and close: they name headers to drop.
    const { out } = build(raw('Connection', 'x-private1', 'X-Private1', 'a', 'Connection', 'x-two', 'X-Two', 'b', 'X-Kept', 'c'))
    expect(out).toEqual(['x-kept', 'c', 'x-request-id', 'rid'])
  })

  it("drops the upstream's RateLimit-* headers, in any case, only when the route's limiters write their own", () => {
    const headers = raw('RateLimit-Limit', '999', 'RATELIMIT-REMAINING', '5', 'ratelimit-reset', '1', 'RateLimit-Policy', '999;w=1', 'X-Up', '1')
    expect(buildResponseHeaders(headers, 'rid', false, { bytesLeft: 0 }, true)).toEqual(['x-up', '1', 'x-request-id', 'rid'])
    expect(buildResponseHeaders(headers, 'rid', false, { bytesLeft: 0 })).toEqual(['ratelimit-limit', '999', 'ratelimit-remaining', '5',
      'ratelimit-reset', '1', 'ratelimit-policy', '999;w=1', 'x-up', '1', 'x-request-id', 'rid'])
  })

  it('reports the Content-Length of the body, or -1 without one', () => {
    expect(build(raw('Content-Length', '4096')).body.bytesLeft).toBe(4096)
    expect(build(raw('Content-Length', '0')).body.bytesLeft).toBe(0)
    expect(build(raw('Content-Type', 'text/plain')).body.bytesLeft).toBe(-1)
  })

  it('replaces the upstream X-Request-Id and adds Connection: close while draining', () => {
    const { out } = build(raw('X-Request-Id', 'upstream-made'), true)
    expect(out).toEqual(['x-request-id', 'rid', 'connection', 'close'])
  })
})

describe('buildResponseHeaders with common and uncommon names', () => {
  it('drops every hop-by-hop name, Upgrade and X-Request-Id in any letter case, whether or not the table knows it', () => {
    const dropped = ['Keep-Alive', 'PROXY-CONNECTION', 'Proxy-Authorization', 'proxy-authenticate', 'TE', 'Trailer',
      'Transfer-Encoding', 'HTTP2-Settings', 'Upgrade', 'x-REQUEST-id']
    for (const name of dropped) {
      const { out } = build(raw(name, 'v', 'X-Kept', 'k'))
      expect(out, name).toEqual(['x-kept', 'k', 'x-request-id', 'rid'])
    }
  })

  it('passes common and uncommon names on in lower case with their values unchanged', () => {
    const { out, body } = build(raw('SERVER', 'nginx', 'Content-TYPE', 'text/html; charset=ISO-8859-1', 'ETag', '"a\xe9"',
      'X-Custom-Thing', 'Mixed Case', 'content-LENGTH', '12'))
    expect(out).toEqual(['server', 'nginx', 'content-type', 'text/html; charset=ISO-8859-1', 'etag', '"a\xe9"',
      'x-custom-thing', 'Mixed Case', 'content-length', '12', 'x-request-id', 'rid'])
    expect(body.bytesLeft).toBe(12)
  })
})

describe('countString (RateLimit-Remaining without String())', () => {
  it('writes every whole number as String() does, at and around each change of digit count and at random', () => {
    const edges = [0, 1_001_000, 12_345_678, 2 ** 31, 2 ** 53]
    for (let p = 10; p <= 1e10; p *= 10) edges.push(p - 1, p, p + 1)
    for (const n of edges) expect(countString(n)).toBe(String(n))
    for (let i = 0; i < 5000; i++) {
      const n = Math.floor(Math.random() * 10 ** (1 + (i % 10)))
      expect(countString(n)).toBe(String(n))
    }
  })

  it('falls back to String() for what is not a whole number from 0', () => {
    for (const n of [0.5, 1.25, 1000.5, -1, -1000]) expect(countString(n)).toBe(String(n))
  })
})

describe('pushQuotaHeaders', () => {
  const source = { limitHeader: '100', policyHeader: '100;w=60' }
  const reset = (remaining: number, resetMs: number): string | undefined => {
    const out: string[] = []
    pushQuotaHeaders(out, source, remaining, resetMs)
    expect(out.slice(0, 4)).toEqual(['ratelimit-limit', '100', 'ratelimit-remaining', remaining > 0 ? String(remaining) : '0'])
    return out[out.indexOf('ratelimit-reset') + 1]
  }

  it('writes RateLimit-Reset as whole seconds rounded up, following every change of the reset time', () => {
    // The last text is kept for the next response: it must change whenever the seconds do, up or down.
    const cases: Array<[number, string]> = [[1500, '2'], [61_000, '61'], [60_500, '61'], [60_000, '60'], [59_999, '60'],
      [1, '1'], [0, '0'], [1, '1'], [120_000, '120'], [-5, '0'], [120_001, '121'], [999_999_000, '999999']]
    let remaining = 99
    for (const [ms, text] of cases) expect(reset(remaining--, ms)).toBe(text)
  })
})
