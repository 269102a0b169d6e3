// README claims that had no test of their own: the limits (keepAliveTimeout, limits.*
// on reload, no 100 Continue above maxBodySize), the command line (--workers auto, TOLLGATE_CONFIG), and
// the configuration example itself.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, symlinkSync } from 'node:fs'
import net from 'node:net'
import { availableParallelism, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { loadConfigText } from '../../src/config/load.js'
import { CLI, httpRequest, spawnGateway, startGateway } from '../helpers/gateway.js'
import { rawRequest, statusOf } from '../helpers/raw.js'
import { startUpstream } from '../helpers/upstream.js'

const root = resolve(import.meta.dirname, '../..')

const routes = (url: string): string => `
upstreams:
  api: { targets: [{ url: ${url} }] }
routes:
  - { id: api, match: { path: /* }, upstream: api }
`

/**
 * Sends one keep-alive GET on a fresh connection, reads the whole response, then leaves the connection
 * idle; resolves with how long after the response the gateway closed it (rejects after `limitMs`).
 */
function idleCloseAfterMs(port: number, limitMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    let received = ''
    let idleSince = 0
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`the idle connection was still open ${limitMs} ms after the response`))
    }, limitMs)
    socket.on('data', (d: Buffer) => {
      received += d.toString('latin1')
      const end = received.indexOf('\r\n\r\n')
      const length = /\r\ncontent-length: (\d+)/i.exec(received)
      const whole = length !== null ? received.length - end - 4 >= Number(length[1]) : received.endsWith('\r\n0\r\n\r\n')
      if (end >= 0 && whole && idleSince === 0) idleSince = performance.now()
    })
    socket.on('error', () => undefined)
    socket.on('close', () => {
      clearTimeout(timer)
      if (idleSince === 0) reject(new Error(`closed before a whole response: ${JSON.stringify(received)}`))
      else resolve(performance.now() - idleSince)
    })
    socket.write('GET /idle HTTP/1.1\r\nHost: a\r\n\r\n')
  })
}

/** Sends half a request head and nothing more; resolves with what came back and when the gateway closed. */
async function slowloris(port: number): Promise<{ response: string; afterMs: number }> {
  const t0 = performance.now()
  const response = await rawRequest(port, 'GET /slow HTTP/1.1\r\nHost: a\r\nX-Slow: 1\r\n', 10_000)
  return { response, afterMs: performance.now() - t0 }
}

describe('limits.keepAliveTimeout', () => {
  it('closes an idle keep-alive connection after about keepAliveTimeout, not before half of it', async () => {
    const up = await startUpstream({ body: 'ok' })
    const gw = await startGateway(`limits: { keepAliveTimeout: 2s }\n${routes(up.url)}`)
    const afterMs = await idleCloseAfterMs(gw.port, 15_000)
    expect(afterMs).toBeGreaterThanOrEqual(1000)
    // node:http keeps an idle socket one second longer than keepAliveTimeout (measured on Node 20: 1s ->
    // 2.0s, 3s -> 4.0s), then room for a loaded machine; the default 5s would close after 6s.
    expect(afterMs).toBeLessThan(2000 + 1000 + 2000)
  })
})

describe('limits.* on reload', () => {
  it('applies new keepAliveTimeout and headersTimeout to the running listener', async () => {
    const up = await startUpstream({ body: 'ok' })
    const gw = await startGateway(`limits: { keepAliveTimeout: 30s, headersTimeout: 30s }\n${routes(up.url)}`)
    expect((await gw.get('/x')).status).toBe(200)
    expect(await gw.rewrite(`limits: { keepAliveTimeout: 500ms, headersTimeout: 1s }\n${routes(up.url)}`)).toBe('applied')
    // Under the old 30 s, neither would happen within the bounds below.
    const idle = await idleCloseAfterMs(gw.port, 5_000)
    expect(idle).toBeGreaterThanOrEqual(250)
    const slow = await slowloris(gw.port)
    expect(statusOf(slow.response)).toBe(408)
    expect(slow.afterMs).toBeGreaterThanOrEqual(900)
    expect(slow.afterMs).toBeLessThan(1000 + 500 + 3000) // headersTimeout + the 500 ms check + room for load
  })

  // A route whose own entry is unchanged still takes the new default (src/table/compiled-route.ts compares
  // the worked-out limit, not the route's text).
  it('applies a new limits.maxBodySize to routes that did not change', async () => {
    const up = await startUpstream({ body: 'ok' })
    const gw = await startGateway(`limits: { maxBodySize: 1MiB }\n${routes(up.url)}`)
    const body = Buffer.alloc(2000, 'x')
    expect((await gw.request('/x', { method: 'POST', body })).status).toBe(200)
    expect(await gw.rewrite(`limits: { maxBodySize: 1KiB }\n${routes(up.url)}`)).toBe('applied')
    expect((await gw.request('/x', { method: 'POST', body })).status).toBe(413)
  })

  it('applies a new limits.maxBodySize to a route the reload changed', async () => {
    const up = await startUpstream({ body: 'ok' })
    const gw = await startGateway(`limits: { maxBodySize: 1MiB }\n${routes(up.url)}`)
    const body = Buffer.alloc(2000, 'x')
    expect((await gw.request('/x', { method: 'POST', body })).status).toBe(200)
    expect(await gw.rewrite(`limits: { maxBodySize: 1KiB }\n${routes(up.url).replace('upstream: api }', 'upstream: api, priority: 1 }')}`)).toBe('applied')
    expect((await gw.request('/x', { method: 'POST', body })).status).toBe(413)
  })
})

describe('Expect: 100-continue', () => {
  const limited = (url: string): string => `limits: { maxBodySize: 1KiB }\n${routes(url)}`

  it('gets 413 and no interim 100 when Content-Length is over maxBodySize', async () => {
    const up = await startUpstream()
    const gw = await startGateway(limited(up.url))
    const response = await rawRequest(gw.port, 'POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2000\r\n\r\n', 1000)
    expect(response).toMatch(/^HTTP\/1\.1 413 /)
    expect(response).not.toContain('100 Continue')
    expect(up.hits).toBe(0)
  })

  it('gets the interim 100 when the declared size fits (the test above can see one)', async () => {
    const up = await startUpstream()
    const gw = await startGateway(limited(up.url))
    const response = await rawRequest(gw.port, 'POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n', 1000)
    expect(response).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\n/)
  })
})

describe('command line', () => {
  it('--workers auto starts one worker per available CPU', async () => {
    const up = await startUpstream({ body: 'ok' })
    const gw = await spawnGateway(routes(up.url), ['--workers', 'auto'])
    // spawnGateway returns once /readyz is 200, which in cluster mode waits for every worker.
    const status = (await httpRequest(`${gw.adminUrl}/status`)).json() as { workers?: { configured: number; ready: number; processes: Array<{ pid: number }> } }
    expect(status.workers?.configured).toBe(availableParallelism())
    expect(status.workers?.ready).toBe(availableParallelism())
    expect(new Set(status.workers?.processes.map((p) => p.pid)).size).toBe(availableParallelism())
    expect((await httpRequest(`${gw.url}/x`)).body).toBe('ok')
    expect((await gw.stop()).code).toBe(0)
  })

  it('without --config, serves the file that TOLLGATE_CONFIG names', async () => {
    const up = await startUpstream({ body: 'from TOLLGATE_CONFIG' })
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-env-config-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const path = join(dir, 'elsewhere.yaml')
    writeFileSync(path, `listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n${routes(up.url)}`)
    // Run from a directory without a routes.yaml, so the default path cannot be what is served.
    const child = spawn(process.execPath, [CLI], {
      cwd: dir, env: { ...process.env, TOLLGATE_CONFIG: path, TOLLGATE_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'],
    })
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
    onTestFinished(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL')
        await exited
      }
    })
    let out = ''
    let err = ''
    child.stderr.on('data', (d: Buffer) => { err += d })
    // The start-up log line names the bound proxy address.
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d
        for (const line of out.split('\n')) {
          if (!line.includes('tollgate started')) continue
          resolve((JSON.parse(line) as { proxy: { port: number } }).proxy.port)
        }
      })
      child.once('exit', (code) => reject(new Error(`exited ${code} before starting:\n${out}\n${err}`)))
    })
    const r = await httpRequest(`http://127.0.0.1:${port}/x`)
    expect(r.status).toBe(200)
    expect(r.body).toBe('from TOLLGATE_CONFIG')
    child.kill('SIGTERM')
    expect(await exited).toBe(0)
  })
})

describe('the README configuration examples', () => {
  // Every ```yaml block, and every YAML heredoc in the shell examples, with its line in README.md.
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const lineOf = (index: number): number => readme.slice(0, index).split('\n').length
  const examples = [
    ...[...readme.matchAll(/^```yaml\n([^]*?)^```$/gm)].map((m) => ({ line: lineOf(m.index) + 1, text: m[1]! })),
    ...[...readme.matchAll(/<<'YAML'\n([^]*?)^YAML$/gm)].map((m) => ({ line: lineOf(m.index) + 1, text: m[1]! })),
  ]

  it('finds the full example (every top-level section) among them', () => {
    const full = examples.find((e) => /^routes:/m.test(e.text) && /^limits:/m.test(e.text))
    expect(full).toBeDefined()
    for (const section of ['listen', 'admin', 'clientIp', 'limits', 'paths', 'shutdown', 'log', 'upstreams', 'routes']) {
      expect(full!.text).toMatch(new RegExp(`^${section}:`, 'm'))
    }
  })

  it.each(examples.map((e) => [e.line, e.text] as const))('the example at README.md:%i loads without errors', (line, text) => {
    // Padded to its place in README.md, so that an error names the README's own line.
    const loaded = loadConfigText('\n'.repeat(line - 1) + text, 'README.md', {})
    expect(loaded.warnings).toEqual([])
  })

  it('tollgate validate accepts every example', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-readme-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    // The plugin examples name ./examples/plugins/... relative to a routes.yaml in the repository's root.
    symlinkSync(join(root, 'examples'), join(dir, 'examples'))
    for (const [i, e] of examples.entries()) {
      const file = join(dir, `example-${i}.yaml`)
      writeFileSync(file, e.text)
      const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TOLLGATE_')))
      const r = spawnSync(process.execPath, [CLI, 'validate', file], { encoding: 'utf8', env, timeout: 20_000 })
      expect({ line: e.line, status: r.status, stderr: r.stderr }).toEqual({ line: e.line, status: 0, stderr: '' })
    }
  })
})
