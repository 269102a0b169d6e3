// The process logger (src/telemetry/log.ts) in a real child process: lines are gathered for a few ms before
// they are written, so the ones still gathered when the process exits must be written at exit.
import { spawnSync } from 'node:child_process'
import { resolve } from 'node:path'
import { describe, expect, it } from 'vitest'

const LOG = resolve(import.meta.dirname, '../../dist/src/telemetry/log.js')

function run(body: string): { status: number | null, stdout: string, stderr: string } {
  const script = `const { applyLogSettings, createLogger } = await import(${JSON.stringify(LOG)})\n${body}`
  return spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, TOLLGATE_LOG_LEVEL: 'info' } })
}

describe('the process logger', () => {
  it('writes the lines still gathered when the process exits at once', () => {
    const r = run(`const log = createLogger(process.env)
for (let i = 0; i < 1000; i++) log.info({ i }, 'line')
log.warn('last words')
process.exit(3)`)
    expect(r.status).toBe(3)
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { msg: string, i?: number })
    expect(lines).toHaveLength(1001)
    expect(lines.map((l) => l.i ?? -1).slice(0, 1000)).toEqual(Array.from({ length: 1000 }, (_, i) => i))
    expect(lines[1000]!.msg).toBe('last words')
  })

  it('changes level and format when the config says so, and back', () => {
    const r = run(`const log = createLogger(process.env)
log.debug('hidden')
applyLogSettings(log, { level: 'debug', format: 'pretty', access: true })
log.debug('pretty debug')
applyLogSettings(log, { level: 'warn', format: 'json', access: true })
log.info('hidden too')
log.warn('json warn')`)
    expect(r.status).toBe(0)
    const out = r.stdout.split('\n').filter((l) => l !== '')
    expect(out).toHaveLength(2)
    expect(out[0]).toMatch(/^\[[\d:.]+\] DEBUG \(\d+\): pretty debug$/)
    expect(JSON.parse(out[1]!)).toMatchObject({ level: 40, msg: 'json warn' })
  })

  it('writes whole lines in order, multi-byte and over a write\'s size included, alone and sharing a pipe', () => {
    // Lines gathered as bytes (UTF-8): a line with 3-byte characters near a batch's end, lines longer than a
    // write (PIPE_BUF, 4 KiB, when the descriptor is shared), and a stream of them, in order and intact.
    for (const shares of [false, true]) {
      const r = run(`const log = createLogger(process.env, 1, ${shares})
for (let i = 0; i < 3000; i++) log.info({ i, text: i % 500 === 7 ? '\u20ac'.repeat(3000) : '\u00e9\u20ac'.repeat(i % 40) }, 'line')
setTimeout(() => log.warn('done'), 300)`)
      expect(r.status).toBe(0)
      const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { msg: string, i?: number, text?: string })
      expect(lines).toHaveLength(3001)
      for (let i = 0; i < 3000; i++) {
        expect(lines[i]!.i).toBe(i)
        expect(lines[i]!.text).toBe(i % 500 === 7 ? '\u20ac'.repeat(3000) : '\u00e9\u20ac'.repeat(i % 40))
      }
      expect(lines[3000]!.msg).toBe('done')
    }
  })
})

describe('HeadStamp (the access line\'s head, rewritten in place within a second)', () => {
  const expected = (ms: number): string => `{"level":30,"time":"${new Date(ms).toISOString()}","pid":42`

  it('gives the head of every millisecond it is asked for: within a second, across seconds, days and years, and back in time', async () => {
    const { HeadStamp } = await import('../../src/telemetry/log.js')
    const stamp = new HeadStamp('{"level":30', ',"pid":42')
    const text = (ms: number): string => Buffer.from(stamp.at(ms)).toString('latin1')
    const start = Date.UTC(2026, 11, 31, 23, 59, 58, 990)
    // Every millisecond over 2.5 s from 10 ms before a second ends, past midnight into a new year.
    for (let ms = start; ms < start + 2500; ms++) expect(text(ms)).toBe(expected(ms))
    // The same millisecond twice, then back in time by a second and by a millisecond, then a leap day.
    for (const ms of [start + 5, start + 5, start - 1000, start - 1001, Date.UTC(2028, 1, 29, 12, 0, 0, 7), 0, 999, 1000, -1, -1000]) {
      expect(text(ms)).toBe(expected(ms))
    }
  })
})

describe('WallClock (Date.now() read off the monotonic clock)', () => {
  /** A wall clock and a monotonic clock the test moves; the wall clock counts its reads. */
  function clocks(start: number) {
    const c = { mono: 5_000.25, wallOffset: start - 5_000.25, slew: 1, wallReads: 0 }
    const wall = (): number => { c.wallReads++; return Math.floor(c.mono * c.slew + c.wallOffset) }
    const monotonic = (): number => c.mono
    return { c, wall, monotonic }
  }

  // Date.now() is whole milliseconds, so the offset taken from it is up to 1 ms short: within 1 ms is exact.
  it('gives the wall clock\'s milliseconds (within the 1 ms Date.now() truncates) and reads it once a second, not once a call', async () => {
    const { WallClock } = await import('../../src/telemetry/log.js')
    const { c, wall, monotonic } = clocks(Date.UTC(2026, 11, 5, 4, 0, 0, 500))
    const clock = new WallClock(wall, monotonic)
    c.wallReads = 0
    // 3 seconds in steps of 0.1 ms: 30,000 calls.
    for (let i = 0; i < 30_000; i++) {
      c.mono += 0.1
      const truth = Math.floor(c.mono + c.wallOffset)
      expect(clock.now()).toBeGreaterThanOrEqual(truth - 1)
      expect(clock.now()).toBeLessThanOrEqual(truth)
    }
    expect(c.wallReads).toBeLessThanOrEqual(4)
  })

  it('follows a step of the system clock, back or forth, within a second, and a fast system clock within 2 ms', async () => {
    const { WallClock } = await import('../../src/telemetry/log.js')
    const { c, wall, monotonic } = clocks(Date.UTC(2026, 11, 5, 4, 0, 0, 0))
    const clock = new WallClock(wall, monotonic)
    for (const step of [3_600_000, -7_200_000]) {
      c.wallOffset += step // the system clock is set
      const setAt = c.mono
      while (Math.abs(clock.now() - Math.floor(c.mono + c.wallOffset)) > 1) {
        c.mono += 1
        expect(c.mono - setAt).toBeLessThanOrEqual(1000)
      }
    }
    // NTP slewing a fast clock by 0.05% (its most): 0.5 ms a second at most, plus the truncation.
    c.slew = 1.0005
    c.wallOffset = Math.floor(c.mono + c.wallOffset) - c.mono * c.slew
    for (let i = 0; i < 100_000; i++) {
      c.mono += 0.1
      expect(Math.abs(clock.now() - wall())).toBeLessThanOrEqual(2)
    }
  })
})
