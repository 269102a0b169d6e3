// Fallback load generator when wrk is not installed: closed loop, N connections, each sending its next
// request as soon as the previous response has been read. Runs in its own process so that it can be
// pinned away from the proxy under test. Prints one JSON line (LoadResult) on stdout.
// node dist/bench/load-generator.js --url http://127.0.0.1:P/path --connections 50 --duration-ms 10000
//   [--method POST --body-file f] [--header name:value ...]
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { Pool, type Dispatcher } from 'undici'
import { quantile } from './lib/stats.js'

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    connections: { type: 'string', default: '50' },
    'duration-ms': { type: 'string', default: '10000' },
    method: { type: 'string', default: 'GET' },
    'body-file': { type: 'string' },
    header: { type: 'string', multiple: true, default: [] },
  },
})
if (values.url === undefined) throw new Error('--url is required')
const target = new URL(values.url)
const connections = Number(values.connections)
const durationMs = Number(values['duration-ms'])
const method = values.method as Dispatcher.HttpMethod
const body = values['body-file'] === undefined ? null : readFileSync(values['body-file'])
const path = `${target.pathname}${target.search}`
const headers: Record<string, string> = {}
for (const h of values.header ?? []) {
  const colon = h.indexOf(':')
  if (colon <= 0) throw new Error(`--header wants name:value, got ${JSON.stringify(h)}`)
  headers[h.slice(0, colon)] = h.slice(colon + 1)
}

// https:// (scenario tls): the peers' certificate is the bench's self-signed one (bench/lib/certs.ts).
const pool = new Pool(target.origin, { connections, pipelining: 1, keepAliveTimeout: 60_000, connect: { rejectUnauthorized: false } })
let latenciesMs = new Float64Array(1 << 16)
let count = 0
let errors = 0
let non2xx = 0
let bytesRead = 0

function record(ms: number): void {
  if (count === latenciesMs.length) {
    const bigger = new Float64Array(latenciesMs.length * 2)
    bigger.set(latenciesMs)
    latenciesMs = bigger
  }
  latenciesMs[count++] = ms
}

async function loop(deadline: number): Promise<void> {
  while (performance.now() < deadline) {
    const started = performance.now()
    try {
      const { statusCode, body: responseBody } = await pool.request({ path, method, body, headers })
      for await (const chunk of responseBody) bytesRead += (chunk as Buffer).length
      if (statusCode < 200 || statusCode > 399) non2xx++
      record(performance.now() - started)
    } catch {
      errors++
    }
  }
}

const startedAt = performance.now()
const deadline = startedAt + durationMs
await Promise.all(Array.from({ length: connections }, () => loop(deadline)))
const elapsedS = (performance.now() - startedAt) / 1000
await pool.close()
const sorted = latenciesMs.subarray(0, count).sort()
process.stdout.write(`${JSON.stringify({
  rps: count / elapsedS,
  p50Ms: quantile(sorted, 0.5),
  p99Ms: quantile(sorted, 0.99),
  requests: count,
  errors,
  non2xx,
  bytesRead,
})}\n`)
