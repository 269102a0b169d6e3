// Runs the W3C Trace Context test harness (w3c/trace-context `test/`, not part of this repository) through
// the gateway (README "Tracing" says how to get the harness and what the run gives):
//
//   harness --POST /tc/test--> gateway --> adapter (below) --POST /tc/harness/<scope>.<n>--> gateway --> harness
//
// The adapter is the "test service" the harness drives: for each `{url, arguments}` it is given, it POSTs
// `arguments` to `url`, sending the traceparent and every tracestate header it received exactly as received,
// and it makes those callbacks through the gateway too. Hop 1 tests the gateway's continue-or-restart; hop 2
// gives each callback its own span (AdvancedTest wants 3 parent ids for one trace id).
//
// Usage (after `npm run build`):
//   node dist/bench/tools/w3c-trace-context.js --harness /path/to/trace-context/test [--sampled] [--python /usr/bin/python3]
// --sampled turns the span exporter on (OTLP to a local sink that answers 200) with sampleRatio 1, so every
// request takes the sampled path: a CLIENT span id per attempt as the upstream's parent.
// Prints the harness's own output and a summary line; exits with the harness's code (failures + errors).
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, request, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

const HARNESS_ORIGIN = 'http://127.0.0.1:7777'

interface Action {
  readonly url: string
  readonly arguments?: unknown
}

function arg(name: string): string | null {
  const i = process.argv.indexOf(name)
  return i < 0 ? null : process.argv[i + 1] ?? null
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return (server.address() as AddressInfo).port
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

/** POST `body` to `url` with `headers` (a flat name/value list, duplicates kept); resolves when answered. */
function post(url: string, headers: string[], body: string): Promise<void> {
  return new Promise((resolve) => {
    // A header list (to keep repeated tracestate lines) makes node:http leave Host out: add it.
    const req = request(url, { method: 'POST', headers: ['host', new URL(url).host, ...headers, 'content-type', 'application/json', 'content-length', String(Buffer.byteLength(body))] }, (res) => {
      if (res.statusCode !== 200) process.stderr.write(`adapter: POST ${url} answered ${res.statusCode}\n`)
      res.resume()
      res.on('end', () => resolve())
    })
    req.on('error', (err) => {
      process.stderr.write(`adapter: POST ${url} failed: ${err.message}\n`)
      resolve() // the harness reports the missing callback itself
    })
    req.end(body)
  })
}

/** The harness's "test service": callbacks through the gateway, trace headers copied verbatim. */
function startAdapter(gatewayUrl: () => string): Server {
  return createServer((req, res) => {
    void readBody(req).then(async (raw) => {
      const actions = JSON.parse(raw.toString('utf8') || '[]') as Action[]
      const trace: string[] = []
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const name = req.rawHeaders[i]!.toLowerCase()
        if (name === 'traceparent' || name === 'tracestate') trace.push(name, req.rawHeaders[i + 1]!)
      }
      for (const action of Array.isArray(actions) ? actions : [actions]) {
        const url = action.url.startsWith(HARNESS_ORIGIN) ? gatewayUrl() + '/tc/harness' + action.url.slice(HARNESS_ORIGIN.length) : action.url
        await post(url, trace, JSON.stringify(action.arguments ?? []))
      }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{}')
    }, () => {
      res.writeHead(400).end()
    })
  })
}

async function main(): Promise<number> {
  const harnessDir = arg('--harness')
  if (harnessDir === null) {
    process.stderr.write('usage: node dist/bench/tools/w3c-trace-context.js --harness <w3c/trace-context test dir> [--sampled] [--python /usr/bin/python3]\n')
    return 2
  }
  const python = arg('--python') ?? '/usr/bin/python3'
  const sampled = process.argv.includes('--sampled')
  let gatewayUrl = ''
  const adapter = startAdapter(() => gatewayUrl)
  const adapterPort = await listen(adapter)
  // An OTLP sink for --sampled: answers every export with 200 (an empty ExportTraceServiceResponse).
  const sink = createServer((req, res) => void readBody(req).then(() => res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()))
  const sinkPort = await listen(sink)
  const gwPort = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-w3c-'))
  const config = join(dir, 'routes.yaml')
  writeFileSync(config, `listen: 127.0.0.1:${gwPort}
admin: 127.0.0.1:0
tracing: { exporter: ${sampled ? 'otlp' : 'none'}, endpoint: http://127.0.0.1:${sinkPort}/v1/traces, sampleRatio: ${sampled ? 1 : 0}, parentBased: true }
upstreams:
  adapter: { targets: [{ url: http://127.0.0.1:${adapterPort} }] }
  harness: { targets: [{ url: ${HARNESS_ORIGIN} }] }
routes:
  - { id: tc-test, match: { path: /tc/test }, upstream: adapter }
  - { id: tc-harness, match: { path: /tc/harness/* }, upstream: harness, rewrite: { stripPrefix: /tc/harness } }
`)
  gatewayUrl = `http://127.0.0.1:${gwPort}`
  const cli = resolve(import.meta.dirname, '../../src/cli.js')
  const gateway = spawn(process.execPath, [cli, '--config', config], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, TOLLGATE_LOG_LEVEL: 'warn' } })
  try {
    await waitUntilUp(gatewayUrl, () => gateway.exitCode !== null)
    const harness = spawn(python, ['test.py', `${gatewayUrl}/tc/test`], {
      cwd: harnessDir, env: { ...process.env, SPEC_LEVEL: '1', STRICT_LEVEL: '2' }, stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    harness.stdout!.on('data', (d: Buffer) => { out += d; process.stdout.write(d) })
    harness.stderr!.on('data', (d: Buffer) => { out += d; process.stderr.write(d) })
    const code = await new Promise<number>((r) => harness.once('exit', (c) => r(c ?? 1)))
    const ran = /^Ran (\d+) tests?/m.exec(out)?.[1] ?? '?'
    const skipped = /skipped=(\d+)/.exec(out)?.[1] ?? '0'
    const failures = /failures=(\d+)/.exec(out)?.[1] ?? '0'
    const errors = /errors=(\d+)/.exec(out)?.[1] ?? '0'
    process.stdout.write(`\nW3C trace-context through the gateway (SPEC_LEVEL=1 STRICT_LEVEL=2, ${sampled ? 'sampled: spans on' : 'exporter none'}): ran ${ran}, skipped ${skipped}, failures ${failures}, errors ${errors}; exit ${code}\n`)
    return code
  } finally {
    if (gateway.exitCode === null) {
      gateway.kill('SIGTERM')
      await new Promise((r) => gateway.once('exit', r))
    }
    adapter.close()
    sink.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** A port nothing listens on (bound, then released). */
async function freePort(): Promise<number> {
  const s = createServer()
  const port = await listen(s)
  await new Promise((r) => s.close(r))
  return port
}

async function waitUntilUp(url: string, hasExited: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !hasExited(); i++) {
    const up = await new Promise<boolean>((r) => {
      const req = request(url + '/', (res) => { res.resume(); r(true) })
      req.on('error', () => r(false))
      req.end()
    })
    if (up) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`the gateway did not answer on ${url}`)
}

process.exitCode = await main()
