// WebSocket routes to https:// targets (wss; README "WebSocket" and "Upstreams over HTTPS"): the handshake
// towards the upstream uses the upstream's `tls:` as its HTTP requests do: verified against tls.ca (a
// wrong CA is 502 UPSTREAM_UNAVAILABLE, and nothing reaches the upstream, in plaintext or otherwise),
// tls.servername in SNI, the client certificate presented to a target that requires one (mTLS). Real
// gateway, a real node:https + `ws` upstream on 127.0.0.1, openssl-made certificates.
import { readFileSync, rmSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { WebSocketServer } from 'ws'
import { makeUpstreamTlsCerts, type CertFiles, type TestCa } from '../helpers/certs.js'
import { startGateway } from '../helpers/gateway.js'
import { nextMessage, refusedStatus, wsConnect } from '../helpers/ws.js'

let dir: string
let ca: TestCa
let otherCa: TestCa
let clientCa: TestCa
let server: CertFiles
let client: CertFiles

beforeAll(() => {
  ({ dir, ca, otherCa, clientCa, server, client } = makeUpstreamTlsCerts('tollgate-wss-'))
})

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

interface Handshake {
  readonly path: string
  readonly servername: string | null
  readonly clientCn: string | null
}

/** A WebSocket echo server over TLS (server's certificate); `requireClientCert`: mTLS against clientCa. */
async function startWssUpstream(options: { requireClientCert?: boolean } = {}): Promise<{ url: string; handshakes: Handshake[]; requests: number }> {
  const state = { url: '', handshakes: [] as Handshake[], requests: 0 }
  const srv = https.createServer({
    cert: readFileSync(server.cert), key: readFileSync(server.key),
    ...(options.requireClientCert === true ? { ca: readFileSync(clientCa.cert), requestCert: true, rejectUnauthorized: true } : {}),
  }, (_req, res) => {
    state.requests++
    res.end('plain')
  })
  const wss = new WebSocketServer({ noServer: true })
  srv.on('upgrade', (req, socket, head) => {
    const tls = req.socket as TLSSocket & { servername?: string | false }
    const peer = tls.getPeerCertificate()
    state.handshakes.push({
      path: req.url ?? '',
      servername: typeof tls.servername === 'string' ? tls.servername : null,
      clientCn: peer?.subject?.CN === undefined ? null : String(peer.subject.CN),
    })
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
      ws.on('error', () => ws.terminate())
    })
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  onTestFinished(async () => {
    for (const ws of wss.clients) ws.terminate()
    srv.closeAllConnections()
    await new Promise<void>((r) => srv.close(() => r()))
  })
  state.url = `https://127.0.0.1:${(srv.address() as AddressInfo).port}`
  return state
}

function config(url: string, tls: string): string {
  return `
upstreams:
  chat:
    targets: [{ url: "${url}" }]
    tls: ${tls}
routes:
  - { id: chat, match: { path: /chat/* }, upstream: chat, websocket: true }
`
}

const wsUrl = (httpUrl: string, path: string): string => httpUrl.replace(/^http/, 'ws') + path

describe('WebSocket to https:// targets (wss)', () => {
  it('verifies the target against tls.ca, sends tls.servername in SNI, and relays frames', async () => {
    const up = await startWssUpstream()
    const gw = await startGateway(config(up.url, `{ ca: ${ca.cert}, servername: upstream.test }`))
    const { ws } = await wsConnect(wsUrl(gw.url, '/chat/room'))
    ws.send('hello over tls')
    const echoed = await nextMessage(ws)
    expect(echoed.data.toString()).toBe('hello over tls')
    expect(up.handshakes).toEqual([{ path: '/chat/room', servername: 'upstream.test', clientCn: null }])
  })

  it('answers 502 when the target certificate does not chain to tls.ca, or lacks the servername; nothing reaches the upstream', async () => {
    const up = await startWssUpstream()
    const gw = await startGateway(config(up.url, `{ ca: ${otherCa.cert}, servername: upstream.test }`))
    const refused = await refusedStatus(wsUrl(gw.url, '/chat/room'))
    expect(refused.status).toBe(502)
    expect(refused.headers['x-tollgate-error']).toBe('UPSTREAM_UNAVAILABLE')
    const wrongName = await startGateway(config(up.url, `{ ca: ${ca.cert}, servername: other.test }`))
    expect((await refusedStatus(wsUrl(wrongName.url, '/chat/room'))).status).toBe(502)
    expect(up.handshakes).toEqual([])
    expect(up.requests).toBe(0)
  })

  it('presents tls.cert to a target that requires a client certificate (mTLS), and fails without it', async () => {
    const up = await startWssUpstream({ requireClientCert: true })
    const gw = await startGateway(config(up.url, `{ ca: ${ca.cert}, cert: ${client.cert}, key: ${client.key}, servername: upstream.test }`))
    const { ws } = await wsConnect(wsUrl(gw.url, '/chat/m'))
    ws.send('mutual')
    expect((await nextMessage(ws)).data.toString()).toBe('mutual')
    expect(up.handshakes.map((h) => h.clientCn)).toEqual(['tollgate gateway'])

    const without = await startGateway(config(up.url, `{ ca: ${ca.cert}, servername: upstream.test }`))
    expect((await refusedStatus(wsUrl(without.url, '/chat/m'))).status).toBe(502)
    expect(up.handshakes).toHaveLength(1)
  })
})
