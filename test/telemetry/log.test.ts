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
