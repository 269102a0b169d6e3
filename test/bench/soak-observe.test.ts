// What the soak reads from the gateway besides responses: its output (a crash or fatal line fails the soak,
// bench/lib/soak-log.ts) and its figures (/proc and /metrics, bench/lib/soak-sampler.ts).
import { appendFileSync, closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { collectDefaultMetrics, Registry } from 'prom-client'
import { describe, expect, it, onTestFinished } from 'vitest'
import { LogWatch } from '../../bench/lib/soak-log.js'
import { countFds, parseMetricSums } from '../../bench/lib/soak-sampler.js'

function tempFile(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-soak-log-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'gateway.log')
  writeFileSync(path, '')
  return path
}

describe('LogWatch', () => {
  it('counts log lines by level as they are appended, a line split across two reads included', () => {
    const path = tempFile()
    const watch = new LogWatch(path)
    appendFileSync(path, '{"level":30,"msg":"config applied"}\n{"level":40,"msg":"target ej')
    watch.poll()
    expect(watch.levels).toEqual({ info: 1 })
    appendFileSync(path, 'ected"}\n{"level":50,"msg":"etcd /soak/routes/etcd-bad rejected"}\n')
    watch.poll()
    expect(watch.levels).toEqual({ info: 1, warn: 1, error: 1 })
    expect(watch.errors).toEqual(['etcd /soak/routes/etcd-bad rejected'])
    expect(watch.badLines).toBe(0)
  })

  it('reports an uncaught exception\'s stack trace and a fatal line', () => {
    const path = tempFile()
    const watch = new LogWatch(path)
    appendFileSync(path, 'file:///x/dist/src/proxy/forward.js:10\nTypeError: boom\n    at f (file:///x.js:1:1)\n{"level":60,"msg":"dying"}\n')
    watch.poll()
    expect(watch.badLines).toBe(4)
    expect(watch.bad[1]).toBe('not a log line: TypeError: boom')
    expect(watch.bad[3]).toBe('fatal: {"level":60,"msg":"dying"}')
  })
})

describe('the figures', () => {
  it('reads heap, event-loop p99 and active handles from prom-client\'s own default metrics', async () => {
    const registry = new Registry()
    collectDefaultMetrics({ register: registry })
    const sums = parseMetricSums(await registry.metrics())
    registry.clear()
    expect(sums.get('nodejs_heap_size_used_bytes')).toBeGreaterThan(1024 * 1024)
    expect(sums.get('nodejs_eventloop_lag_p99_seconds')).toBeGreaterThanOrEqual(0)
    expect(sums.get('nodejs_active_handles_total')).toBeGreaterThan(0)
  })

  it('sums labelled samples per name', () => {
    const sums = parseMetricSums('# HELP x\nnodejs_active_handles{type="Socket"} 3\nnodejs_active_handles{type="Timer"} 2\nup 1\n')
    expect(sums.get('nodejs_active_handles')).toBe(5)
    expect(sums.get('up')).toBe(1)
  })

  it('counts a process\'s open file descriptors, one more for a file it opens', () => {
    const before = countFds(process.pid)!
    const fd = openSync(tempFile(), 'r')
    try {
      expect(countFds(process.pid)).toBe(before + 1)
    } finally {
      closeSync(fd)
    }
    expect(countFds(2 ** 22 + 1)).toBeNull()
  })
})
