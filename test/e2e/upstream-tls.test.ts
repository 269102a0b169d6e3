// Upstreams over https:// (README "Upstreams over HTTPS"; issue 16 item 1): the target's certificate is
// verified against the upstream's `tls.ca`, `servername` is sent in SNI and checked, a client certificate is
// presented to a target that requires one (mTLS), active health probes use the same TLS, a certificate that
// does not verify is 502 and never a plaintext retry, a renewed CA file applies on reload, and bad files are
// one-line config errors. Real gateway, real node:https upstreams on 127.0.0.1, openssl-made certificates.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { loadConfigText } from '../../src/config/load.js'
import { ConfigError } from '../../src/errors.js'
import { makeUpstreamTlsCerts, type CertFiles, type TestCa } from '../helpers/certs.js'
import { startGateway } from '../helpers/gateway.js'

let dir: string
let ca: TestCa
let otherCa: TestCa
let clientCa: TestCa
let server: CertFiles
let client: CertFiles

beforeAll(() => {
  ({ dir, ca, otherCa, clientCa, server, client } = makeUpstreamTlsCerts('tollgate-up-tls-'))
})

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

interface Seen {
  readonly path: string
  readonly servername: string | null
  readonly clientCn: string | null
  readonly userAgent: string | undefined
}

interface HttpsUpstream {
  readonly url: string
  readonly seen: Seen[]
}

/** A node:https upstream with `server`'s certificate; `requireClientCert`: mTLS against clientCa. */
async function startHttpsUpstream(options: { requireClientCert?: boolean } = {}): Promise<HttpsUpstream> {
  const seen: Seen[] = []
  const srv = https.createServer({
    cert: readFileSync(server.cert), key: readFileSync(server.key),
    ...(options.requireClientCert === true ? { ca: readFileSync(clientCa.cert), requestCert: true, rejectUnauthorized: true } : {}),
  }, (req, res) => {
    const socket = req.socket as TLSSocket
    const peer = socket.getPeerCertificate()
    seen.push({
      path: req.url ?? '',
      servername: typeof (socket as TLSSocket & { servername?: string | false }).servername === 'string' ? (socket as TLSSocket & { servername: string }).servername : null,
      clientCn: peer?.subject?.CN === undefined ? null : String(peer.subject.CN),
      userAgent: req.headers['user-agent'],
    })
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end('secure hello')
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  onTestFinished(async () => {
    srv.closeAllConnections()
    await new Promise<void>((r) => srv.close(() => r()))
  })
  const port = (srv.address() as AddressInfo).port
  return { url: `https://127.0.0.1:${port}`, seen }
}

function upstreamYaml(url: string, tls: string, extra = ''): string {
  return `
upstreams:
  secure:
    targets: [{ url: "${url}" }]
    tls: ${tls}
${extra}
routes:
  - { id: r, match: { path: /* }, upstream: secure }
`
}

describe('upstreams over https', () => {
  it('verifies the target against tls.ca and sends tls.servername in SNI', async () => {
    const up = await startHttpsUpstream()
    const gw = await startGateway(upstreamYaml(up.url, `{ ca: ${ca.cert}, servername: upstream.test }`))
    const r = await gw.get('/hello')
    expect(r.status).toBe(200)
    expect(r.body).toBe('secure hello')
    expect(up.seen.map((s) => [s.path, s.servername])).toEqual([['/hello', 'upstream.test']])
  })

  it('answers 502 when the target certificate does not chain to tls.ca, and sends nothing in plaintext', async () => {
    const up = await startHttpsUpstream()
    const gw = await startGateway(upstreamYaml(up.url, `{ ca: ${otherCa.cert}, servername: upstream.test }`))
    const r = await gw.get('/hello')
    expect(r.status).toBe(502)
    expect(r.headers['x-tollgate-error']).toBe('UPSTREAM_UNAVAILABLE')
    expect(up.seen).toEqual([])
  })

  it('answers 502 when the certificate does not carry the servername', async () => {
    const up = await startHttpsUpstream()
    const gw = await startGateway(upstreamYaml(up.url, `{ ca: ${ca.cert}, servername: other.test }`))
    expect((await gw.get('/hello')).status).toBe(502)
    expect(up.seen).toEqual([])
  })

  it('presents tls.cert to a target that requires a client certificate (mTLS)', async () => {
    const up = await startHttpsUpstream({ requireClientCert: true })
    const gw = await startGateway(upstreamYaml(up.url, `{ ca: ${ca.cert}, cert: ${client.cert}, key: ${client.key}, servername: upstream.test }`))
    const r = await gw.get('/mtls')
    expect(r.status).toBe(200)
    expect(up.seen.map((s) => s.clientCn)).toEqual(['tollgate gateway'])

    const without = await startHttpsUpstream({ requireClientCert: true })
    const gw2 = await startGateway(upstreamYaml(without.url, `{ ca: ${ca.cert}, servername: upstream.test }`))
    expect((await gw2.get('/mtls')).status).toBe(502)
    expect(without.seen).toEqual([])
  })

  it('probes an https target with the same TLS: a good CA makes it healthy, a wrong one unhealthy', async () => {
    const active = 'healthCheck: { active: { path: /healthz, interval: 100ms, timeout: 2s, healthyThreshold: 1, unhealthyThreshold: 1 } }'
    const up = await startHttpsUpstream({ requireClientCert: true })
    const gw = await startGateway(upstreamYaml(up.url, `{ ca: ${ca.cert}, cert: ${client.cert}, key: ${client.key}, servername: upstream.test }`, `    ${active}`))
    const probe = await waitFor(() => up.seen.find((s) => s.userAgent === 'tollgate-health-check'))
    expect(probe).toMatchObject({ path: '/healthz', servername: 'upstream.test', clientCn: 'tollgate gateway' })

    const bad = await startHttpsUpstream()
    const gw2 = await startGateway(upstreamYaml(bad.url, `{ ca: ${otherCa.cert}, servername: upstream.test }`, `    ${active}`))
    const state = await waitFor(async () => {
      const status = (await gw2.admin('/status')).json() as { upstreams: Array<{ targets: Array<{ healthy: boolean }> }> }
      const t = status.upstreams[0]!.targets[0]!
      return t.healthy ? undefined : t
    })
    expect(state.healthy).toBe(false)
    expect(bad.seen).toEqual([])
    void gw
  })

  it('puts a renewed CA file in service on reload (new connections verify with it)', async () => {
    const up = await startHttpsUpstream()
    const caFile = join(mkdtempSync(join(dir, 'renew-')), 'ca.pem')
    copyFileSync(otherCa.cert, caFile)
    const gw = await startGateway(upstreamYaml(up.url, `{ ca: ${caFile}, servername: upstream.test }`))
    expect((await gw.get('/a')).status).toBe(502)
    copyFileSync(ca.cert, caFile)
    expect(await gw.gateway.reload()).toBe('applied')
    expect((await gw.get('/b')).status).toBe(200)
  })
})

describe('upstream tls config errors', () => {
  const load = (tls: string): string => {
    try {
      loadConfigText(upstreamYaml('https://127.0.0.1:1', tls), join(dir, 'routes.yaml'), {})
      return 'loaded'
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      return err.message
    }
  }

  it('names file, line, column and field of a missing CA file in one line', () => {
    const message = load('{ ca: missing-ca.pem }')
    expect(message).toMatch(/routes\.yaml:5:\d+ upstreams\.secure\.tls\.ca: cannot read .*missing-ca\.pem: no such file/)
    expect(message.split('\n')).toHaveLength(1)
  })

  it('refuses a cert without its key, and a key that is not the certificate\'s', () => {
    expect(load(`{ cert: ${client.cert} }`)).toMatch(/upstreams\.secure\.tls\.cert: a client certificate needs both cert and key; add key/)
    expect(load(`{ cert: ${client.cert}, key: ${server.key} }`)).toMatch(/upstreams\.secure\.tls\.key: .* is not the key of the certificate/)
  })

  it('warns that tls: does nothing for http:// targets', () => {
    const result = loadConfigText(upstreamYaml('http://127.0.0.1:1', `{ ca: ${ca.cert} }`), join(dir, 'routes.yaml'), {})
    expect(result.warnings.map((w) => `${w.path}: ${w.message}`)).toEqual([
      'upstreams.secure.tls: tls: applies to https:// targets only, and this upstream has none; its targets are reached in plaintext',
    ])
  })

  it('refuses a CA file without a certificate', () => {
    writeFileSync(join(dir, 'junk.pem'), 'not a certificate\n')
    expect(load('{ ca: junk.pem }')).toMatch(/upstreams\.secure\.tls\.ca: .*junk\.pem holds no PEM certificate/)
  })
})

/** Polls `probe` (every 50 ms, at most 10 s) until it returns a value. */
async function waitFor<T>(probe: () => T | undefined | Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const v = await probe()
    if (v !== undefined) return v
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error('condition not met within 10 s')
}
