// The bench reads wrk's text report and our own duration flags; a misread figure would put a wrong number
// in the README, so the parsing is pinned down here on a report of the shape wrk 4.1 prints.
import { describe, expect, it } from 'vitest'
import { parseH2loadOutput, parseWrkOutput } from '../../bench/lib/load.js'
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

// As h2load 1.52 (Debian nghttp2-client) prints it, and its --log-file: start µs, status, duration µs.
const H2LOAD_REPORT = `finished in 10.00s, 4573.20 req/s, 160.10KB/s
requests: 45732 total, 45732 started, 45730 done, 45728 succeeded, 2 failed, 1 errored, 1 timeout
status codes: 45725 2xx, 0 3xx, 2 4xx, 1 5xx
traffic: 1.56MB (1636000) total, 86KB (88000) headers (space savings 90.00%), 89KB (91460) data
`
const H2LOAD_LOG = ['1796378866145634\t200\t1000', '1796378866145634\t200\t2000', '1796378866145635\t200\t3000', '1796378866145636\t404\t40000', ''].join('\n')

describe('parseH2loadOutput', () => {
  it('reads req/s and counts from the report, p50 and p99 from the per-request log', () => {
    expect(parseH2loadOutput(H2LOAD_REPORT, H2LOAD_LOG)).toEqual({
      rps: 4573.2, p50Ms: 2, p99Ms: 40, requests: 45730, errors: 2, non2xx: 3,
    })
  })

  it('fails with the end of the output when the report is not there', () => {
    expect(() => parseH2loadOutput('connect to 127.0.0.1:1 failed', '')).toThrow(/connect to 127\.0\.0\.1:1 failed/)
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
