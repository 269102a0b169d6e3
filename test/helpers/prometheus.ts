// Real Prometheus for the tests: Debian's `prometheus` binary (package prometheus, which .ci/run extracts into
// /opt/prom) on a random loopback port, with a generated config and a fresh TSDB in a temporary directory,
// stopped by its PID. Queries go through its HTTP API (/api/v1/query), as Grafana's would.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request as undiciRequest } from 'undici'
import { onTestFinished } from 'vitest'
import { freePort } from './upstream.js'

const find = (name: string): string | undefined =>
  [process.env[`${name.toUpperCase()}_BIN`], `/opt/prom/usr/bin/${name}`, `/usr/bin/${name}`].find((p) => p !== undefined && existsSync(p))

/** Debian's prometheus package: .ci/run extracts it into /opt/prom. */
export const PROMETHEUS_BIN = find('prometheus')
export const PROMTOOL_BIN = find('promtool')
export const MISSING_PROMETHEUS = "prometheus missing: .ci/run extracts it from Debian's prometheus package into /opt/prom"

/** One series of an instant vector. */
export interface Sample {
  readonly metric: Record<string, string>
  readonly value: number
  /** Milliseconds since the epoch. */
  readonly atMs: number
}

/** An instant query's answer; a scalar is one sample without labels, a matrix the last point of each series. */
export interface QueryResult {
  readonly resultType: 'vector' | 'scalar' | 'string' | 'matrix'
  readonly result: readonly Sample[]
}

export interface PrometheusServer {
  readonly url: string
  readonly port: number
  readonly pid: number
  readonly job: string
  readonly configPath: string
  /** Instant query at Prometheus's now; rejects with Prometheus's error and the expression. */
  query(expr: string): Promise<QueryResult>
  /** The vector of an instant query (a scalar becomes one sample with no labels). */
  vector(expr: string): Promise<readonly Sample[]>
  /** Values of `label` on series matching `match` (what Grafana's label_values() asks). */
  labelValues(label: string, match: string): Promise<string[]>
  /**
   * Resolves once every target of the job was scraped successfully by a scrape that started after
   * `afterMs` (epoch ms); resolves with the scrape time. The samples of that scrape are then queryable.
   */
  scrapedAfter(afterMs: number, timeoutMs?: number): Promise<number>
  output(): string
  close(): Promise<void>
}

export interface PrometheusOptions {
  /** host:port of each /metrics endpoint to scrape. */
  readonly targets: readonly string[]
  /** Default 1s: short so that the tests wait little for a scrape. */
  readonly scrapeInterval?: string
  readonly job?: string
  /** The caller closes it (afterAll) instead of the end of the current test. */
  readonly suite?: boolean
}

const agent = new Agent({ keepAliveTimeout: 1000 })

async function getJson(url: string): Promise<{ status: number; body: unknown }> {
  const r = await undiciRequest(url, { dispatcher: agent, signal: AbortSignal.timeout(10_000) })
  const text = await r.body.text()
  let body: unknown = text
  try { body = JSON.parse(text) } catch { /* /-/ready answers plain text */ }
  return { status: r.statusCode, body }
}

function configText(job: string, interval: string, targets: readonly string[]): string {
  // scrape_timeout must not exceed the interval; a loaded machine still answers /metrics in well under 1 s.
  return [
    'global:',
    `  scrape_interval: ${interval}`,
    `  scrape_timeout: ${interval}`,
    `  evaluation_interval: ${interval}`,
    'scrape_configs:',
    `  - job_name: ${job}`,
    '    metrics_path: /metrics',
    '    static_configs:',
    `      - targets: [${targets.map((t) => JSON.stringify(t)).join(', ')}]`,
    '',
  ].join('\n')
}

type ApiSample = { metric: Record<string, string>; value: [number, string] }

function toSamples(data: { resultType: string; result: unknown }): Sample[] {
  const at = (t: number): number => Math.round(t * 1000)
  switch (data.resultType) {
    case 'vector':
      return (data.result as ApiSample[]).map((s) => ({ metric: s.metric, value: Number(s.value[1]), atMs: at(s.value[0]) }))
    case 'scalar':
    case 'string': {
      const [t, v] = data.result as [number, string]
      return [{ metric: {}, value: Number(v), atMs: at(t) }]
    }
    default: // matrix: the last point of each series
      return (data.result as Array<{ metric: Record<string, string>; values: Array<[number, string]> }>).flatMap((s) => {
        const last = s.values[s.values.length - 1]
        return last === undefined ? [] : [{ metric: s.metric, value: Number(last[1]), atMs: at(last[0]) }]
      })
  }
}

/** Prometheus on 127.0.0.1:<random>, ready (/-/ready answers 200) when it resolves. */
export async function startPrometheus(options: PrometheusOptions): Promise<PrometheusServer> {
  if (PROMETHEUS_BIN === undefined) throw new Error(MISSING_PROMETHEUS)
  const job = options.job ?? 'tollgate'
  for (let attempt = 0; ; attempt++) {
    try {
      return await tryStart(PROMETHEUS_BIN, job, options)
    } catch (err) {
      // A port was taken between freePort() and Prometheus's bind (other test files run at the same time).
      if (attempt >= 2) throw err
    }
  }
}

async function tryStart(bin: string, job: string, options: PrometheusOptions): Promise<PrometheusServer> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-prom-'))
  const configPath = join(dir, 'prometheus.yml')
  writeFileSync(configPath, configText(job, options.scrapeInterval ?? '1s', options.targets))
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const child: ChildProcess = spawn(bin, [
    `--config.file=${configPath}`,
    `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--log.level=warn',
  ], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const keep = (d: Buffer): void => { out = (out + d).slice(-20_000) }
  child.stdout!.on('data', keep)
  child.stderr!.on('data', keep)
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  const isRunning = (): boolean => child.exitCode === null && child.signalCode === null

  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    if (isRunning()) {
      child.kill('SIGTERM')
      const killer = setTimeout(() => { if (isRunning()) child.kill('SIGKILL') }, 10_000)
      await exited
      clearTimeout(killer)
    }
    rmSync(dir, { recursive: true, force: true })
  }

  const deadline = Date.now() + 30_000
  let ready = false
  while (Date.now() < deadline && isRunning()) {
    try {
      if ((await getJson(`${url}/-/ready`)).status === 200) { ready = true; break }
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 100))
  }
  if (!ready) {
    await close()
    throw new Error(`prometheus on ${url} not ready within 30 s (exit ${child.exitCode ?? child.signalCode ?? 'none'}):\n${out}`)
  }

  const query = async (expr: string): Promise<QueryResult> => {
    const { status, body } = await getJson(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`)
    const b = body as { status?: string; error?: string; data?: { resultType: string; result: unknown } }
    if (status !== 200 || b.status !== 'success' || b.data === undefined) {
      throw new Error(`PromQL ${expr}: HTTP ${status} ${b.error ?? JSON.stringify(body)}`)
    }
    return { resultType: b.data.resultType, result: toSamples(b.data) } as QueryResult
  }

  const server: PrometheusServer = {
    url, port, job, configPath,
    get pid() { return child.pid! },
    query,
    vector: async (expr) => (await query(expr)).result,
    async labelValues(label, match) {
      const { status, body } = await getJson(`${url}/api/v1/label/${encodeURIComponent(label)}/values?match[]=${encodeURIComponent(match)}`)
      const b = body as { status?: string; error?: string; data?: string[] }
      if (status !== 200 || b.status !== 'success' || b.data === undefined) throw new Error(`label values of ${label} on ${match}: HTTP ${status} ${b.error ?? ''}`)
      return b.data
    },
    async scrapedAfter(afterMs, timeoutMs = 30_000) {
      // `up` is written with the scraped samples and committed with them, at the scrape's start time, so a
      // visible `up` sample newer than afterMs means that scrape's samples are visible too. Prometheus may
      // move a scrape's timestamp by up to 2 ms to align it with the interval (--scrape.adjust-timestamps),
      // hence the margin.
      const wantedMs = afterMs + 10
      const stop = Date.now() + timeoutMs
      let seen = ''
      for (;;) {
        const up = await server.vector(`up{job="${job}"}`)
        seen = up.map((s) => `${s.metric['instance']} up=${s.value} at ${new Date(s.atMs).toISOString()}`).join('; ')
        const stamps = await server.vector(`timestamp(up{job="${job}"})`)
        if (up.length === options.targets.length && up.every((s) => s.value === 1) &&
            stamps.length === up.length && stamps.every((s) => s.value * 1000 >= wantedMs)) {
          return Math.min(...stamps.map((s) => s.value * 1000))
        }
        if (Date.now() > stop) {
          const targets = JSON.stringify((await getJson(`${url}/api/v1/targets`)).body)
          throw new Error(`no successful scrape of job ${job} after ${new Date(afterMs).toISOString()} within ${timeoutMs} ms; ` +
            `up: ${seen || 'no samples'}; targets: ${targets.slice(0, 2000)}`)
        }
        await new Promise((r) => setTimeout(r, 100))
      }
    },
    output: () => out,
    close,
  }
  if (options.suite !== true) onTestFinished(close)
  return server
}
