// Running the load generator: wrk when installed (-t1 -cN --latency), else bench/load-generator.ts.
import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { benchScript } from './paths.js'
import { findBinary } from './processes.js'
import { quantile } from './stats.js'
import { parseWrkLatencyMs } from './units.js'

export interface LoadResult {
  readonly rps: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly requests: number
  /** Socket errors (connect, read, write, timeout). */
  readonly errors: number
  /** Responses outside 2xx/3xx. */
  readonly non2xx: number
}

export interface LoadRequest {
  readonly url: string
  readonly method: string
  readonly body: Buffer | null
  /** Sent with every request (Scenario.headers). */
  readonly headers: Readonly<Record<string, string>>
  readonly connections: number
  readonly durationMs: number
  readonly core: number | null
  /** HTTP/2 over TLS (scenario h2): run by h2load, `connections` streams over a tenth as many connections. */
  readonly h2?: boolean
}

export interface LoadGenerator {
  readonly name: string
  run(request: LoadRequest): Promise<LoadResult>
}

function runToEnd(command: string, args: readonly string[], core: number | null): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const [file, argv] = core === null ? [command, [...args]] : ['taskset', ['-c', String(core), command, ...args]]
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** Read wrk 4's report (with --latency). */
export function parseWrkOutput(text: string): LoadResult {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text)
  const p50 = /^\s+50%\s+(\S+)/m.exec(text)
  const p99 = /^\s+99%\s+(\S+)/m.exec(text)
  const requests = /^\s+(\d+) requests in/m.exec(text)
  if (rps === null || p50 === null || p99 === null || requests === null) {
    throw new Error(`cannot read wrk output: ${text.trim().split('\n').slice(-3).join(' | ')}`)
  }
  const sockets = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text)
  const errors = sockets === null ? 0 : sockets.slice(1).reduce((sum, n) => sum + Number(n), 0)
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text)
  return {
    rps: Number(rps[1]),
    p50Ms: parseWrkLatencyMs(p50[1]!),
    p99Ms: parseWrkLatencyMs(p99[1]!),
    requests: Number(requests[1]),
    errors,
    non2xx: non2xx === null ? 0 : Number(non2xx[1]),
  }
}

function wrkGenerator(wrk: string, tmpDir: string): LoadGenerator {
  let scriptCount = 0
  return {
    name: 'wrk',
    async run(request) {
      // wrk takes whole seconds.
      const seconds = Math.max(1, Math.round(request.durationMs / 1000))
      const args = ['-t1', `-c${request.connections}`, `-d${seconds}s`, '--latency', '--timeout', '10s']
      const headers = Object.entries(request.headers)
      if (request.method !== 'GET' || request.body !== null || headers.length > 0) {
        const script = join(tmpDir, `wrk-${scriptCount++}.lua`)
        const lines = [`wrk.method = "${request.method}"`]
        for (const [name, value] of headers) lines.push(`wrk.headers[${JSON.stringify(name)}] = ${JSON.stringify(value)}`)
        if (request.body !== null) {
          const bodyFile = `${script}.body`
          writeFileSync(bodyFile, request.body)
          lines.push(`local f = assert(io.open("${bodyFile}", "rb"))`, 'wrk.body = f:read("*a")', 'f:close()',
            'wrk.headers["Content-Type"] = "application/octet-stream"')
        }
        writeFileSync(script, `${lines.join('\n')}\n`)
        args.push('-s', script)
      }
      args.push(request.url)
      const { code, stdout, stderr } = await runToEnd(wrk, args, request.core)
      if (code !== 0) throw new Error(`wrk exited ${code}: ${(stderr || stdout).trim().split('\n').slice(-2).join(' | ')}`)
      return parseWrkOutput(stdout)
    },
  }
}

function nodeGenerator(tmpDir: string): LoadGenerator {
  let bodyCount = 0
  return {
    name: 'undici closed loop (bench/load-generator.ts)',
    async run(request) {
      const args = [benchScript('load-generator.js'), '--url', request.url, '--connections', String(request.connections),
        '--duration-ms', String(request.durationMs), '--method', request.method]
      if (request.body !== null) {
        const bodyFile = join(tmpDir, `body-${bodyCount++}`)
        writeFileSync(bodyFile, request.body)
        args.push('--body-file', bodyFile)
      }
      for (const [name, value] of Object.entries(request.headers)) args.push('--header', `${name}:${value}`)
      const { code, stdout, stderr } = await runToEnd(process.execPath, args, request.core)
      if (code !== 0) throw new Error(`load generator exited ${code}: ${stderr.trim().split('\n').slice(-2).join(' | ')}`)
      return JSON.parse(stdout) as LoadResult
    },
  }
}

/**
 * h2load (Debian nghttp2-client) for HTTP/2: `-c` connections with `-m 10` concurrent streams each, so the
 * total concurrency is the bench's --connections as in the other scenarios. h2load prints no percentiles;
 * its --log-file has every request's time, from which p50 and p99 are taken here.
 */
function h2loadGenerator(h2load: string, tmpDir: string): LoadGenerator {
  let logCount = 0
  return {
    name: 'h2load',
    async run(request) {
      if (request.method !== 'GET' || request.body !== null) throw new Error('h2load runs GET scenarios only here')
      const streams = 10
      const connections = Math.max(1, Math.round(request.connections / streams))
      const seconds = Math.max(1, Math.round(request.durationMs / 1000))
      const logFile = join(tmpDir, `h2load-${logCount++}.log`)
      const args = ['-c', String(connections), '-m', String(streams), '-D', String(seconds), '--log-file', logFile]
      for (const [name, value] of Object.entries(request.headers)) args.push('-H', `${name}: ${value}`)
      args.push(request.url)
      const { code, stdout, stderr } = await runToEnd(h2load, args, request.core)
      if (code !== 0) throw new Error(`h2load exited ${code}: ${(stderr || stdout).trim().split('\n').slice(-2).join(' | ')}`)
      return parseH2loadOutput(stdout, readFileSync(logFile, 'utf8'))
    },
  }
}

/** h2load's summary and its --log-file (start µs, status, duration µs per line). */
export function parseH2loadOutput(text: string, log: string): LoadResult {
  const rps = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(text)
  const counts = /requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(text)
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(text)
  if (rps === null || counts === null || codes === null) throw new Error(`cannot read h2load output: ${text.trim().split('\n').slice(-3).join(' | ')}`)
  const durations: number[] = []
  for (const line of log.split('\n')) {
    const cols = line.split('\t')
    if (cols.length >= 3) durations.push(Number(cols[2]) / 1000)
  }
  const sorted = Float64Array.from(durations).sort()
  return {
    rps: Number(rps[1]),
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
    requests: Number(counts[2]),
    errors: Number(counts[5]) + Number(counts[6]),
    non2xx: Number(codes[3]) + Number(codes[4]),
  }
}

/** wrk if installed, else our own generator; h2load for HTTP/2 requests. */
export function chooseLoadGenerator(tmpDir: string): LoadGenerator {
  const wrk = findBinary('wrk')
  const http1 = wrk === null ? nodeGenerator(tmpDir) : wrkGenerator(wrk, tmpDir)
  const h2loadBin = findBinary('h2load')
  const h2 = h2loadBin === null ? null : h2loadGenerator(h2loadBin, tmpDir)
  return {
    name: h2 === null ? http1.name : `${http1.name}; h2load for HTTP/2`,
    run(request) {
      if (request.h2 !== true) return http1.run(request)
      if (h2 === null) return Promise.reject(new Error('h2load not installed (apt-get install nghttp2-client)'))
      return h2.run(request)
    },
  }
}
