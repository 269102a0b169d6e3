// HTTP/2 against the built gateway process with Debian's nghttp2-client (README "HTTP/2"; issue 16 item 2):
// `nghttp` over TLS (ALPN h2) and h2c with prior knowledge, the malformed requests nghttp can send that
// node:http2's own client refuses to (connection-specific headers, a TE other than trailers: refused by the
// gateway's HTTP/2 layer with RST_STREAM, never forwarded), and `h2load` with many concurrent streams on a
// few connections. Skipped where the tools are missing (.ci/run installs nghttp2-client). And SIGTERM to the
// process: GOAWAY to an HTTP/2 client, its stream in flight finished, exit 0.
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TestCa, type CertFiles } from '../helpers/certs.js'
import { spawnGateway, type GatewayProcess } from '../helpers/gateway.js'
import { startUpstream, type Upstream } from '../helpers/upstream.js'
import { connectH2, h2Request } from '../helpers/h2-client.js'
import { startHeldUpstream } from '../helpers/held.js'

const hasTools = await new Promise<boolean>((resolve) => {
  execFile('nghttp', ['--version'], (err) => {
    if (err !== null) return resolve(false)
    execFile('h2load', ['--version'], (err2) => resolve(err2 === null))
  })
})

let dir: string
let cert: CertFiles

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tollgate-nghttp-'))
  cert = new TestCa(dir).server('gw', 'gw.test', ['gw.test'])
})

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
      resolve({ code, out: stdout + stderr })
    })
  })
}

async function start(up: Upstream, mode: 'tls' | 'h2c', extra = ''): Promise<{ gw: GatewayProcess; base: string }> {
  const listener = mode === 'tls' ? `tls: { certificates: [{ cert: ${cert.cert}, key: ${cert.key} }] }\nhttp2: true` : 'http2: h2c'
  const gw = await spawnGateway(`${listener}
${extra}
upstreams: { u: { targets: [{ url: "${up.url}" }] } }
routes:
  - { id: api, match: { path: /api/* }, upstream: u }
`)
  const port = new URL(gw.url).port
  return { gw, base: `${mode === 'tls' ? 'https' : 'http'}://127.0.0.1:${port}` }
}

/** The :status values nghttp -v printed for the responses it received. */
function statuses(out: string): string[] {
  return [...out.matchAll(/recv \(stream_id=\d+\) :status: (\d{3})/g)].map((m) => m[1]!)
}

describe.skipIf(!hasTools)('HTTP/2 with nghttp and h2load', () => {
  it('nghttp gets answers over TLS (ALPN h2) and over h2c with prior knowledge, 404 included', async () => {
    const up = await startUpstream()
    for (const mode of ['tls', 'h2c'] as const) {
      const { gw, base } = await start(up, mode)
      const ok = await run('nghttp', ['-nv', `${base}/api/a`, `${base}/api/b`, `${base}/nowhere`])
      expect(ok.code, ok.out).toBe(0)
      expect(statuses(ok.out).sort()).toEqual(['200', '200', '404'])
      if (mode === 'tls') expect(ok.out).toMatch(/The negotiated protocol: h2/)
      await gw.stop()
    }
    expect(up.requests.map((r) => r.url).sort()).toEqual(['/api/a', '/api/a', '/api/b', '/api/b'])
  })

  it('refuses connection-specific request headers and TE other than trailers with RST_STREAM, never forwarding them', async () => {
    const up = await startUpstream()
    const { base } = await start(up, 'tls')
    for (const header of ['connection: close', 'transfer-encoding: chunked', 'upgrade: websocket', 'keep-alive: timeout=5', 'proxy-connection: keep-alive', 'te: gzip']) {
      const r = await run('nghttp', ['-nv', '-H', header, `${base}/api/bad`])
      expect(statuses(r.out), `${header}:\n${r.out}`).toEqual([])
      expect(r.out, header).toMatch(/recv RST_STREAM frame[^\n]*\n[^\n]*error_code=PROTOCOL_ERROR/)
    }
    expect(up.hits).toBe(0)
    // `te: trailers` is the one TE HTTP/2 allows; it is hop-by-hop and not forwarded to the HTTP/1.1 upstream.
    const ok = await run('nghttp', ['-nv', '-H', 'te: trailers', `${base}/api/good`])
    expect(statuses(ok.out)).toEqual(['200'])
    expect(up.requests[0]!.headers['te']).toBeUndefined()
  })

  it('h2load: 400 requests over 4 connections with 10 concurrent streams each all succeed', async () => {
    const up = await startUpstream()
    const { base } = await start(up, 'tls')
    const r = await run('h2load', ['-n', '400', '-c', '4', '-m', '10', `${base}/api/load`])
    expect(r.code, r.out).toBe(0)
    expect(r.out).toMatch(/requests: 400 total, 400 started, 400 done, 400 succeeded, 0 failed, 0 errored/)
    expect(r.out).toMatch(/status codes: 400 2xx/)
    expect(up.hits).toBe(400)
  })
})

describe('HTTP/2 and SIGTERM (the built gateway process)', () => {
  it('sends GOAWAY on SIGTERM, finishes the stream in flight and exits 0', async () => {
    const up = await startHeldUpstream('finished')
    // An idle session gets GOAWAY after keepAliveTimeout anyway: far beyond this test, so the one seen is SIGTERM's.
    const { gw, base } = await start(up, 'tls', 'limits: { keepAliveTimeout: 60s }')
    const session = await connectH2(base, { rejectUnauthorized: false })
    const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()))
    const inFlight = h2Request(session, { ':path': '/api/slow' })
    await up.holding(1)
    const signalled = performance.now()
    const exited = gw.stop('SIGTERM')
    await goaway
    expect(performance.now() - signalled).toBeLessThan(10_000)
    up.release()
    const r = await inFlight
    expect([r.status, r.body]).toEqual([200, 'finished'])
    expect((await exited).code).toBe(0)
  })
})
