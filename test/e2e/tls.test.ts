// TLS termination on the proxy listener (README "TLS"; issue 16 item 1): certificates chosen by SNI with
// the first as the default, minVersion, X-Forwarded-Proto https, certificates swapped on a change of their
// files with a keep-alive connection still served, a bad new certificate rejected while the old one keeps
// serving, and client certificates (mTLS). Real gateway, real upstream, node:tls / node:https clients, all
// on 127.0.0.1; the certificates are made by openssl in a temp dir.
import { copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls, { type PeerCertificate, type TLSSocket } from 'node:tls'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import type { ReloadEvent } from '../../src/lifecycle/config-sources.js'
import { Gateway } from '../../src/lifecycle/gateway.js'
import { Metrics } from '../../src/telemetry/metrics.js'
import { TestCa, type CertFiles } from '../helpers/certs.js'
import { spawnGateway } from '../helpers/gateway.js'
import { SpanKind, startOtlpReceiver } from '../helpers/otlp-receiver.js'
import { startUpstream, type Upstream } from '../helpers/upstream.js'

let dir: string
let ca: TestCa
let upstream: Upstream
let files: { default: CertFiles; a: CertFiles; b: CertFiles; defaultV2: CertFiles; client: CertFiles }

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tollgate-tls-'))
  ca = new TestCa(dir)
  files = {
    default: ca.server('default', 'default v1', ['default.test']),
    a: ca.server('a', 'a v1', ['a.test']),
    b: ca.server('b', 'b v1', ['b.test', '*.b.test']),
    defaultV2: ca.server('default-v2', 'default v2', ['default.test']),
    client: ca.client('client', 'client one'),
  }
  upstream = await startUpstream({ suite: true })
})

afterAll(async () => {
  await upstream.close()
  rmSync(dir, { recursive: true, force: true })
})

interface Started {
  readonly gateway: Gateway
  readonly port: number
  readonly dir: string
  readonly logs: Array<{ level: number; msg: string; [k: string]: unknown }>
}

/** An in-process gateway on a TLS listener; `watch`: the real file watcher (stat poll slowed to a minute). */
async function start(tlsYaml: string, options: { watch?: boolean; routes?: string } = {}): Promise<Started> {
  const gwDir = mkdtempSync(join(tmpdir(), 'tollgate-tls-gw-'))
  const configPath = join(gwDir, 'routes.yaml')
  writeFileSync(configPath, [
    'listen: 127.0.0.1:0',
    'admin: 127.0.0.1:0',
    tlsYaml,
    `upstreams: { u: { targets: [{ url: "${upstream.url}" }] } }`,
    options.routes ?? 'routes: [{ id: r, match: { path: /* }, upstream: u }]',
  ].join('\n') + '\n')
  const logs: Started['logs'] = []
  const log = pino({ level: 'info' }, { write: (line: string) => { logs.push(JSON.parse(line) as Started['logs'][number]) } })
  const gateway = await Gateway.start({
    configPath, env: {}, log, watchFile: options.watch ?? false, watchPollMs: 60_000, metrics: new Metrics({ defaultMetrics: false }),
  })
  onTestFinished(async () => {
    await gateway.shutdown()
    rmSync(gwDir, { recursive: true, force: true })
  })
  return { gateway, port: gateway.proxyAddress.port, dir: gwDir, logs }
}

/** Copies a certificate and key to `into` (by rename, as cert managers write them). */
function install(from: CertFiles, into: CertFiles): void {
  for (const [src, dst] of [[from.cert, into.cert], [from.key, into.key]] as const) {
    copyFileSync(src, dst + '.tmp')
    renameSync(dst + '.tmp', dst)
  }
}

/** A handshake: the certificate the gateway presented, or the error. Verifies against the test CA but not the name. */
function handshake(port: number, options: tls.ConnectionOptions = {}): Promise<{ cert: PeerCertificate; protocol: string | null } | Error> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: readPem(ca.cert), checkServerIdentity: () => undefined, ...options })
    socket.setTimeout(10_000, () => socket.destroy(new Error('handshake timed out')))
    socket.once('secureConnect', () => {
      const result = { cert: socket.getPeerCertificate(), protocol: socket.getProtocol() }
      socket.end()
      resolve(result)
    })
    socket.once('error', (err) => resolve(err))
  })
}

const pem = new Map<string, string>()
function readPem(file: string): string {
  // read once per test file: the CA and the client certificate do not change
  if (!pem.has(file)) pem.set(file, readFileSync(file, 'utf8'))
  return pem.get(file)!
}

interface HttpsResult {
  readonly status: number
  readonly body: string
  readonly reused: boolean
  readonly peerCn: string
}

/** One HTTPS request with Host/SNI `name`, verified against the test CA for that name. */
function get(port: number, name: string, path: string, options: https.RequestOptions = {}): Promise<HttpsResult> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path, servername: name, headers: { host: name }, ca: readPem(ca.cert), ...options }, (res) => {
      const chunks: Buffer[] = []
      // Read now: the agent takes the socket back once the body ended.
      const peerCn = String((res.socket as TLSSocket).getPeerCertificate().subject?.CN ?? '')
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), reused: req.reusedSocket, peerCn }))
      res.on('error', reject)
    })
    req.setTimeout(10_000, () => req.destroy(new Error('request timed out')))
    req.on('error', reject)
    req.end()
  })
}

function certList(...certs: CertFiles[]): string {
  return ['tls:', '  certificates:', ...certs.map((c) => `    - { cert: ${c.cert}, key: ${c.key} }`)].join('\n')
}

describe('TLS termination', () => {
  it('picks the certificate by SNI (exact and wildcard names) and the first for an unknown or missing name', async () => {
    const gw = await start(certList(files.default, files.a, files.b))
    const cn = async (servername?: string): Promise<string> => {
      const r = await handshake(gw.port, servername === undefined ? {} : { servername })
      if (r instanceof Error) throw r
      return String(r.cert.subject.CN)
    }
    expect(await cn('a.test')).toBe('a v1')
    expect(await cn('A.TEST')).toBe('a v1')
    expect(await cn('b.test')).toBe('b v1')
    expect(await cn('x.b.test')).toBe('b v1')
    expect(await cn('y.x.b.test')).toBe('default v1') // a wildcard covers one label only
    expect(await cn('unknown.test')).toBe('default v1')
    expect(await cn()).toBe('default v1')
  })

  it('proxies over TLS: the upstream sees X-Forwarded-Proto https, and the client verifies the certificate for its name', async () => {
    const gw = await start(certList(files.default, files.a))
    const before = upstream.requests.length
    const r = await get(gw.port, 'a.test', '/hello')
    expect(r.status).toBe(200)
    expect(r.peerCn).toBe('a v1')
    const seen = upstream.requests.slice(before).find((q) => q.url === '/hello')
    expect(seen?.headers['x-forwarded-proto']).toBe('https')
    // A plaintext request on the TLS port gets no HTTP answer.
    const plain = await fetch(`http://127.0.0.1:${gw.port}/hello`).then((x) => x.status, (e: unknown) => e)
    expect(plain).toBeInstanceOf(Error)
  })

  it('accepts TLS 1.2 by default and refuses it with minVersion TLSv1.3', async () => {
    const v12 = await start(certList(files.default))
    const ok = await handshake(v12.port, { maxVersion: 'TLSv1.2' })
    expect(ok).not.toBeInstanceOf(Error)
    expect((ok as { protocol: string }).protocol).toBe('TLSv1.2')

    const v13 = await start(`${certList(files.default)}\n  minVersion: TLSv1.3`)
    const refused = await handshake(v13.port, { maxVersion: 'TLSv1.2' })
    expect(refused).toBeInstanceOf(Error)
    expect((refused as NodeJS.ErrnoException).code).toMatch(/ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION|ERR_SSL_UNSUPPORTED_PROTOCOL|ECONNRESET/)
    const tls13 = await handshake(v13.port)
    expect((tls13 as { protocol: string }).protocol).toBe('TLSv1.3')
  })

  it('swaps a renewed certificate on reload while a keep-alive connection goes on being served; a bad one is rejected and the old keeps serving', async () => {
    const live: CertFiles = { cert: join(dir, 'live.pem'), key: join(dir, 'live-key.pem') }
    install(files.default, live)
    const gw = await start(certList(live))
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 })
    onTestFinished(() => agent.destroy())
    const first = await get(gw.port, 'default.test', '/one', { agent })
    expect(first).toMatchObject({ status: 200, peerCn: 'default v1', reused: false })

    install(files.defaultV2, live)
    expect(await gw.gateway.reload()).toBe('applied')
    // The open connection keeps its session and is still served...
    const second = await get(gw.port, 'default.test', '/two', { agent })
    expect(second).toMatchObject({ status: 200, peerCn: 'default v1', reused: true })
    // ...and a new one gets the new certificate.
    const fresh = await handshake(gw.port, { servername: 'default.test' })
    expect((fresh as { cert: PeerCertificate }).cert.subject.CN).toBe('default v2')
    // A client that sends no server name gets the listener's default context: swapped too.
    const noSni = await handshake(gw.port)
    expect((noSni as { cert: PeerCertificate }).cert.subject.CN).toBe('default v2')
    expect(gw.logs.some((l) => l.msg === 'tls: certificates in service')).toBe(true)
    // /status names the certificates in force, never their PEM.
    const status = await fetch(`http://127.0.0.1:${gw.gateway.adminAddress!.port}/status`).then((r) => r.text())
    expect(JSON.parse(status).tls).toEqual({
      minVersion: 'TLSv1.2', clientAuth: null,
      certificates: [{ cert: live.cert, key: live.key, subject: 'CN=default v2', names: ['default.test'], validTo: expect.stringMatching(/^\d{4}-/) }],
    })
    expect(status).not.toContain('PRIVATE KEY')

    // A certificate whose key is another's: rejected with one clear line; v2 keeps serving.
    copyFileSync(files.a.key, live.key)
    expect(await gw.gateway.reload()).toBe('rejected')
    const line = gw.logs.find((l) => typeof l.msg === 'string' && l.msg.includes('is not the key of the certificate'))
    expect(line?.msg).toMatch(/routes\.yaml:\d+:\d+ tls\.certificates\[0\]\.key: .*live-key\.pem is not the key of the certificate .*live\.pem \(CN=default v2\)/)
    expect(await gw.gateway.reload()).toBe('unchanged') // the same bad files: reported once
    const still = await handshake(gw.port, { servername: 'default.test' })
    expect((still as { cert: PeerCertificate }).cert.subject.CN).toBe('default v2')
    expect((await get(gw.port, 'default.test', '/three', { agent })).status).toBe(200)

    // PEM garbage: rejected too.
    writeFileSync(live.cert, 'garbage\n')
    expect(await gw.gateway.reload()).toBe('rejected')
    expect((await get(gw.port, 'default.test', '/four')).peerCn).toBe('default v2')
  })

  it('follows the certificate files without being asked: a rename over them is a reload', async () => {
    const live: CertFiles = { cert: join(dir, 'watched.pem'), key: join(dir, 'watched-key.pem') }
    install(files.default, live)
    const gw = await start(certList(live), { watch: true })
    const applied = new Promise<ReloadEvent>((resolve) => {
      const on = (e: ReloadEvent): void => { if (e.result === 'applied') { gw.gateway.events.off('reload', on); resolve(e) } }
      gw.gateway.events.on('reload', on)
    })
    install(files.defaultV2, live)
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no reload within 20 s')), 20_000).unref())
    await Promise.race([applied, timeout])
    const fresh = await handshake(gw.port, { servername: 'default.test' })
    expect((fresh as { cert: PeerCertificate }).cert.subject.CN).toBe('default v2')
  })

  it('verifies client certificates against clientAuth.ca: required refuses a client without one', async () => {
    const gw = await start(`${certList(files.default)}\n  clientAuth: { ca: ${ca.cert}, required: true }`)
    const withCert = await get(gw.port, 'default.test', '/mtls', { cert: readPem(files.client.cert), key: readPem(files.client.key) })
    expect(withCert.status).toBe(200)
    await expect(get(gw.port, 'default.test', '/mtls')).rejects.toThrow()

    // required: false lets a client without a certificate in.
    const optional = await start(`${certList(files.default)}\n  clientAuth: { ca: ${ca.cert}, required: false }`)
    expect((await get(optional.port, 'default.test', '/mtls')).status).toBe(200)
  })

  it('limits by the verified client certificate (key client-cert): each certificate its own bucket, clients without one share a bucket', async () => {
    const second = ca.client('client-two', 'client two')
    const gw = await start([
      `${certList(files.default)}`,
      `  clientAuth: { ca: ${ca.cert}, required: false }`,
    ].join('\n'), { routes: 'routes: [{ id: r, match: { path: /* }, upstream: u, rateLimit: [{ algorithm: sliding-window, limit: 2, window: 1m, key: client-cert }] }]' })
    const as = (c: CertFiles | null) => async (): Promise<number> =>
      (await get(gw.port, 'default.test', '/limited', c === null ? {} : { cert: readPem(c.cert), key: readPem(c.key) })).status
    const one = as(files.client)
    const two = as(second)
    const none = as(null)
    expect([await one(), await one(), await one()]).toEqual([200, 200, 429])
    expect([await two(), await two(), await two()]).toEqual([200, 200, 429])
    expect([await none(), await none(), await none()]).toEqual([200, 200, 429])
  })

  it('refuses key client-cert without tls.clientAuth, at the key', async () => {
    await expect(start(certList(files.default), { routes: 'routes: [{ id: r, match: { path: /* }, upstream: u, rateLimit: [{ algorithm: sliding-window, limit: 2, key: "route,client-cert" }] }]' }))
      .rejects.toThrow(/routes\.yaml:7:\d+ routes\[0\]\.rateLimit\[0\]\.key: key "client-cert" needs tls\.clientAuth/)
  })

  it('forwards the verified subject in the header the route names (forwardClientCert), never a value the client sent', async () => {
    const gw = await start(`${certList(files.default)}\n  clientAuth: { ca: ${ca.cert}, required: false }`,
      { routes: 'routes: [{ id: r, match: { path: /* }, upstream: u, forwardClientCert: X-Client-Cert }]' })
    const seen = async (path: string, options: https.RequestOptions): Promise<string | string[] | undefined> => {
      expect((await get(gw.port, 'default.test', path, options)).status).toBe(200)
      return upstream.requests.find((q) => q.url === path)?.headers['x-client-cert']
    }
    const spoof = { 'x-client-cert': 'CN=admin', 'X-CLIENT-CERT': 'CN=root' }
    expect(await seen('/fcc-1', { cert: readPem(files.client.cert), key: readPem(files.client.key), headers: { host: 'default.test', ...spoof } })).toBe('CN=client one')
    expect(await seen('/fcc-2', { headers: { host: 'default.test', ...spoof } })).toBeUndefined()
  })

  it('refuses forwardClientCert without tls.clientAuth', async () => {
    await expect(start(certList(files.default), { routes: 'routes: [{ id: r, match: { path: /* }, upstream: u, forwardClientCert: x-client-cert }]' }))
      .rejects.toThrow(/routes\.yaml:7:\d+ routes\[0\]\.forwardClientCert: forwardClientCert needs tls\.clientAuth/)
  })

  it('with --workers 2 (the built CLI): every worker serves the certificates, and a renewal reaches them all', async () => {
    const live: CertFiles = { cert: join(dir, 'cluster.pem'), key: join(dir, 'cluster-key.pem') }
    install(files.default, live)
    const proc = await spawnGateway([
      certList(live),
      `upstreams: { u: { targets: [{ url: "${upstream.url}" }] } }`,
      'routes: [{ id: r, match: { path: /* }, upstream: u }]',
    ].join('\n'), ['--workers', '2'])
    const port = Number(new URL(proc.url).port)
    // Fresh connections: the primary hands them to both workers.
    const names = async (n: number): Promise<Set<string>> => {
      const seen = new Set<string>()
      for (let i = 0; i < n; i++) {
        const r = await handshake(port)
        seen.add(r instanceof Error ? r.message : String(r.cert.subject.CN))
      }
      return seen
    }
    expect(await names(10)).toEqual(new Set(['default v1']))
    expect((await get(port, 'default.test', '/cluster')).status).toBe(200)

    install(files.defaultV2, live)
    const deadline = Date.now() + 30_000
    let seen = await names(10)
    while (!(seen.size === 1 && seen.has('default v2')) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100))
      seen = await names(10)
    }
    expect(seen).toEqual(new Set(['default v2']))
    await proc.waitForStdout('tls: certificates in service')
  })

  it('closes a connection that never finishes its handshake after limits.headersTimeout', async () => {
    const gw = await start(`${certList(files.default)}\nlimits: { headersTimeout: 1s }`)
    const started = Date.now()
    const closedAfter = await new Promise<number>((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port: gw.port })
      socket.setTimeout(15_000, () => { socket.destroy(); reject(new Error('still open after 15 s')) })
      socket.on('error', () => undefined)
      socket.on('close', () => resolve(Date.now() - started))
      socket.write('\x16\x03\x01') // the start of a ClientHello record, and then nothing
    })
    expect(closedAfter).toBeGreaterThanOrEqual(900)
    expect(closedAfter).toBeLessThan(10_000)
  })

  it('records url.scheme https on the server span', async () => {
    const receiver = await startOtlpReceiver()
    const gw = await start(`${certList(files.default)}\ntracing: { exporter: otlp, endpoint: ${receiver.endpoint}, sampleRatio: 1 }`)
    expect((await get(gw.port, 'default.test', '/traced')).status).toBe(200)
    await receiver.waitFor((spans) => spans.some((sp) => sp.kind === SpanKind.Server && sp.attributes['url.path'] === '/traced'), 20_000)
    const server = receiver.spans.find((sp) => sp.kind === SpanKind.Server && sp.attributes['url.path'] === '/traced')!
    expect(server.attributes['url.scheme']).toBe('https')
  })
})
