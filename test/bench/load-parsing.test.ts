// The bench reads wrk's text report and our own duration flags; a misread figure would put a wrong number
// in the README, so the parsing is pinned down here on a report of the shape wrk 4.1 prints.
import { describe, expect, it } from 'vitest'
import { parseWrkOutput } from '../../bench/lib/load.js'
import { spread } from '../../bench/lib/stats.js'
import { parseDurationMs, parseWrkLatencyMs } from '../../bench/lib/units.js'

const WRK_REPORT = `Running 10s test @ http://127.0.0.1:40001/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms    1.02ms  31.20ms   91.00%
    Req/Sec    24.51k     1.10k   26.00k    80.00%
  Latency Distribution
     50%    1.95ms
     75%    2.20ms
     90%    2.60ms
     99%    4.81ms
  243912 requests in 10.00s, 30.01MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  24391.20
Transfer/sec:      3.00MB
`

describe('parseWrkOutput', () => {
  it('reads req/s, p50, p99, the request count, socket errors and non-2xx responses', () => {
    expect(parseWrkOutput(WRK_REPORT)).toEqual({
      rps: 24391.2, p50Ms: 1.95, p99Ms: 4.81, requests: 243912, errors: 3, non2xx: 7,
    })
  })

  it('counts no errors when wrk prints neither error line', () => {
    const clean = WRK_REPORT.replace(/^ {2}Socket errors.*\n/m, '').replace(/^ {2}Non-2xx.*\n/m, '')
    expect(parseWrkOutput(clean)).toMatchObject({ errors: 0, non2xx: 0 })
  })

  it('fails with the end of the output when the report is not there', () => {
    expect(() => parseWrkOutput('unable to connect to 127.0.0.1:1 Connection refused')).toThrow(/Connection refused/)
  })
})

describe('units', () => {
  it.each([
    ['626.00us', 0.626], ['1.19ms', 1.19], ['2.01s', 2010], ['1.00m', 60_000],
  ])('reads the wrk latency %s as %f ms', (text, ms) => {
    expect(parseWrkLatencyMs(text)).toBeCloseTo(ms, 6)
  })

  it.each([
    ['10s', 10_000], ['500ms', 500], ['1m', 60_000], ['3', 3000],
  ])('reads the duration flag %s as %i ms', (text, ms) => {
    expect(parseDurationMs(text)).toBe(ms)
  })

  it('rejects a duration without a number', () => {
    expect(() => parseDurationMs('fast')).toThrow(/expected e.g. 10s/)
  })
})

describe('spread', () => {
  it('gives the median and the range of an odd and of an even number of repetitions', () => {
    expect(spread([30, 10, 20])).toEqual({ median: 20, min: 10, max: 30 })
    expect(spread([40, 10, 20, 30])).toEqual({ median: 25, min: 10, max: 40 })
  })
})
