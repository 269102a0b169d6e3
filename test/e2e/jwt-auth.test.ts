// JWT auth through the real gateway (README "Authentication"), against tokens made with jose: HS256, RS256
// and ES256 accepted with their route's key; the known attacks (alg none, a wrong signature, an HS256 token
// whose HMAC secret is the RS256 public key, an algorithm the route does not list) refused as invalid;
// exp and nbf with the leeway both ways; iss, aud and sub; 401 with RFC 6750's WWW-Authenticate; the
// consumer (sub) forwarded and usable as a limiter key while Authorization never reaches the upstream; a
// JWKS served by a real HTTP server on 127.0.0.1: kid rotation with one refresh, the 30 s refresh budget
// counted in server hits, and the last good keys kept while the server is down.
import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import http from 'node:http'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { exportJWK, SignJWT, UnsecuredJWT, type JWK } from 'jose'
import { describe, expect, it, onTestFinished } from 'vitest'
import { startGateway, type Response } from '../helpers/gateway.js'
import { listenForTest } from '../helpers/listen.js'
import { startUpstream, type Upstream } from '../helpers/upstream.js'

const SECRET = 'hs256-secret-for-the-tests-0123456789abcdef'
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
const otherRsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const RSA_PEM = rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string
const EC_PEM = ec.publicKey.export({ type: 'spki', format: 'pem' }) as string
const now = (): number => Math.floor(Date.now() / 1000)

interface Claims {
  sub?: string
  iss?: string
  aud?: string
  exp?: number
  nbf?: number
  kid?: string
}

async function sign(alg: string, key: KeyObject | Uint8Array, claims: Claims = {}): Promise<string> {
  const { kid, exp, nbf, sub, iss, aud } = { sub: 'alice', iss: 'https://idp.test/', aud: 'api', exp: now() + 600, ...claims }
  let jwt = new SignJWT({}).setProtectedHeader(kid === undefined ? { alg } : { alg, kid }).setIssuedAt()
  if (sub !== undefined) jwt = jwt.setSubject(sub)
  if (iss !== undefined) jwt = jwt.setIssuer(iss)
  if (aud !== undefined) jwt = jwt.setAudience(aud)
  if (exp !== undefined) jwt = jwt.setExpirationTime(exp)
  if (nbf !== undefined) jwt = jwt.setNotBefore(nbf)
  return jwt.sign(key)
}

const hs = (claims?: Claims): Promise<string> => sign('HS256', new TextEncoder().encode(SECRET), claims)
const rs = (claims?: Claims): Promise<string> => sign('RS256', rsa.privateKey, claims)
const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

function failures(metrics: string, route: string, reason: string): number {
  const m = new RegExp(`^tollgate_auth_failures_total\\{route="${route}",reason="${reason}"\\} (\\d+)$`, 'm').exec(metrics)
  return m === null ? 0 : Number(m[1])
}

function expectRefused(r: Response, kind: 'missing' | 'invalid' | 'expired'): void {
  expect(r.status).toBe(401)
  expect(r.headers['x-tollgate-error']).toBe('UNAUTHORIZED')
  const challenge = r.headers['www-authenticate']
  if (kind === 'missing') {
    expect(challenge).toBe('Bearer realm="tollgate"')
    expect(r.json()).toEqual({ code: 'UNAUTHORIZED', message: 'no bearer token in the request' })
  } else if (kind === 'invalid') {
    expect(challenge).toBe('Bearer realm="tollgate", error="invalid_token", error_description="the token is not valid"')
    expect(r.json()).toEqual({ code: 'UNAUTHORIZED', message: 'the bearer token is not valid' })
  } else {
    expect(challenge).toBe('Bearer realm="tollgate", error="invalid_token", error_description="the token has expired"')
    expect(r.json()).toEqual({ code: 'UNAUTHORIZED', message: 'the bearer token has expired' })
  }
}

/** A directory with the RSA public key as a file, removed after the test. */
function keyFile(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-jwt-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'rsa.pem')
  writeFileSync(file, RSA_PEM)
  return file
}

function config(up: Upstream, extra = ''): string {
  return `
clientIp: { trustedProxies: [127.0.0.1/32] }
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: hs
    match: { path: /hs/* }
    upstream: api
    auth: { type: jwt, jwt: { secret: "${SECRET}", issuer: "https://idp.test/", audience: api } }
  - id: rs
    match: { path: /rs/* }
    upstream: api
    auth:
      type: jwt
      jwt: { publicKey: ${keyFile()}, issuer: "https://idp.test/", audience: [api, other], algorithms: [RS256] }
      forwardConsumer: x-consumer
  - id: es
    match: { path: /es/* }
    upstream: api
    auth: { type: jwt, jwt: { publicKey: ${JSON.stringify(EC_PEM)}, algorithms: [ES256] } }
  - id: leeway
    match: { path: /leeway/* }
    upstream: api
    auth: { type: jwt, jwt: { secret: "${SECRET}", leeway: 30s } }
${extra}`
}

describe('jwt auth', () => {
  it('accepts HS256, RS256 (key file) and ES256 (PEM) tokens, forwards sub as the consumer and never the Authorization header', async () => {
    const up = await startUpstream()
    const gw = await startGateway(config(up))
    expect((await gw.get('/hs/a', bearer(await hs()))).status).toBe(200)
    expect((await gw.get('/rs/a', { ...bearer(await rs({ sub: 'bob', aud: 'other' })), 'x-consumer': 'admin' })).status).toBe(200)
    expect((await gw.get('/es/a', bearer(await sign('ES256', ec.privateKey, { sub: 'carol' })))).status).toBe(200)
    // The scheme is case-insensitive.
    expect((await gw.get('/hs/b', { authorization: `bearer ${await hs({ sub: 'dave' })}` })).status).toBe(200)
    expect(up.requests.map((r) => r.headers['x-consumer'])).toEqual(['alice', 'bob', 'carol', 'dave'])
    for (const seen of up.requests) {
      expect(seen.headers.authorization).toBeUndefined()
      expect(seen.rawHeaders.filter((_, i) => i % 2 === 0 && seen.rawHeaders[i]!.toLowerCase() === 'x-consumer')).toHaveLength(1)
    }
  })

  it('refuses alg none, a wrong signature, HS256 signed with the RS256 public key, and an algorithm the route does not list', async () => {
    const up = await startUpstream()
    const gw = await startGateway(config(up))
    const none = new UnsecuredJWT({ sub: 'alice' }).setIssuer('https://idp.test/').setAudience('api').setExpirationTime('10m').encode()
    expectRefused(await gw.get('/rs/a', bearer(none)), 'invalid')
    expectRefused(await gw.get('/hs/a', bearer(none)), 'invalid')
    expectRefused(await gw.get('/rs/a', bearer(await sign('RS256', otherRsa.privateKey))), 'invalid')
    expectRefused(await gw.get('/hs/a', bearer(await sign('HS256', new TextEncoder().encode(SECRET + 'x')))), 'invalid')
    // Algorithm confusion: the public key's PEM text (and its DER) as the HMAC secret of an HS256 token.
    expectRefused(await gw.get('/rs/a', bearer(await sign('HS256', new TextEncoder().encode(RSA_PEM)))), 'invalid')
    expectRefused(await gw.get('/rs/a', bearer(await sign('HS256', rsa.publicKey.export({ type: 'spki', format: 'der' })))), 'invalid')
    // Signed with the right key, but PS256 is not in the route's algorithms (RS256 only).
    expectRefused(await gw.get('/rs/a', bearer(await sign('PS256', rsa.privateKey))), 'invalid')
    // A payload changed after signing.
    const [h, , s] = (await rs()).split('.')
    const forged = Buffer.from(JSON.stringify({ sub: 'root', iss: 'https://idp.test/', aud: 'api', exp: now() + 600 })).toString('base64url')
    expectRefused(await gw.get('/rs/a', bearer(`${h}.${forged}.${s}`)), 'invalid')
    expectRefused(await gw.get('/rs/a', bearer('not.a.jwt')), 'invalid')
    expect(up.hits).toBe(0)
    const metrics = (await gw.admin('/metrics')).body
    expect(failures(metrics, 'rs', 'invalid')).toBe(7)
    expect(failures(metrics, 'hs', 'invalid')).toBe(2)
  })

  it('checks exp and nbf with the leeway both ways, and iss, aud and sub', async () => {
    const up = await startUpstream()
    const gw = await startGateway(config(up))
    expectRefused(await gw.get('/hs/a', bearer(await hs({ exp: now() - 5 }))), 'expired')
    expectRefused(await gw.get('/hs/a', bearer(await hs({ nbf: now() + 60 }))), 'invalid')
    // leeway 30s: 10 s past exp or 10 s before nbf is fine, 60 s is not.
    expect((await gw.get('/leeway/a', bearer(await hs({ exp: now() - 10 })))).status).toBe(200)
    expect((await gw.get('/leeway/a', bearer(await hs({ nbf: now() + 10 })))).status).toBe(200)
    expectRefused(await gw.get('/leeway/a', bearer(await hs({ exp: now() - 60 }))), 'expired')
    expectRefused(await gw.get('/leeway/a', bearer(await hs({ nbf: now() + 60 }))), 'invalid')
    expectRefused(await gw.get('/hs/a', bearer(await hs({ iss: 'https://evil.test/' }))), 'invalid')
    expectRefused(await gw.get('/hs/a', bearer(await hs({ aud: 'billing' }))), 'invalid')
    // No sub: no consumer to name, so no entry.
    expectRefused(await gw.get('/hs/a', bearer(await hs({ sub: undefined }))), 'invalid')
    expectRefused(await gw.get('/hs/a', bearer(await hs({ sub: 'a\nb' }))), 'invalid')
    expect(up.hits).toBe(2)
    const metrics = (await gw.admin('/metrics')).body
    expect(failures(metrics, 'hs', 'expired')).toBe(1)
    expect(failures(metrics, 'leeway', 'expired')).toBe(1)
    expect(failures(metrics, 'hs', 'invalid')).toBe(5)
  })

  it('answers 401 missing to no token or another scheme, and counts it', async () => {
    const up = await startUpstream()
    const gw = await startGateway(config(up))
    expectRefused(await gw.get('/rs/a'), 'missing')
    expectRefused(await gw.get('/rs/a', { authorization: 'Basic YTpi' }), 'missing')
    expectRefused(await gw.get('/rs/a', { authorization: 'Bearer' }), 'missing')
    expect(up.hits).toBe(0)
    expect(failures((await gw.admin('/metrics')).body, 'rs', 'missing')).toBe(3)
  })

  it('serves a repeated token from the verification cache, and still refuses it once it has expired', async () => {
    const up = await startUpstream()
    const gw = await startGateway(config(up))
    const token = await hs({ exp: now() + 4 })
    for (let i = 0; i < 5; i++) expect((await gw.get('/hs/a', bearer(token))).status).toBe(200)
    const step = gw.gateway.table.routes.get('hs')!.auth as unknown as { cacheSize: number }
    expect(step.cacheSize).toBe(1)
    // exp is whole seconds: past it (no leeway on this route) the cached entry is no longer trusted.
    const deadline = Date.now() + 15_000
    let status = 200
    while (status === 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250))
      status = (await gw.get('/hs/a', bearer(token))).status
    }
    expect(status).toBe(401)
  })

  it('keys a limiter by the consumer (sub)', async () => {
    const up = await startUpstream()
    const gw = await startGateway(config(up, `  - id: limited
    match: { path: /limited }
    upstream: api
    auth: { type: jwt, jwt: { secret: "${SECRET}" } }
    rateLimit: [{ algorithm: token-bucket, rate: 1, period: 1h, burst: 2, key: consumer }]
`))
    const as = async (sub: string, xff: string): Promise<number> => (await gw.get('/limited', { ...bearer(await hs({ sub })), 'x-forwarded-for': xff })).status
    expect([await as('alice', '192.0.2.1'), await as('alice', '192.0.2.2'), await as('alice', '192.0.2.3')]).toEqual([200, 200, 429])
    expect(await as('bob', '192.0.2.3')).toBe(200)
  })
})

/** A JWKS server on 127.0.0.1 counting its hits; `keys` and `status` may change between requests. */
async function startJwks(keys: JWK[]): Promise<{ url: string; hits: number; keys: JWK[]; status: number; close(): Promise<void> }> {
  const state = {
    url: '', hits: 0, keys, status: 200,
    close: async () => undefined as void,
  }
  const server = http.createServer((_req, res) => {
    state.hits++
    res.writeHead(state.status, { 'content-type': 'application/json' })
    res.end(state.status === 200 ? JSON.stringify({ keys: state.keys }) : '{"error":"down"}')
  })
  const { port, close } = await listenForTest(server)
  state.url = `http://127.0.0.1:${port}/.well-known/jwks.json`
  state.close = close
  return state
}

async function jwk(key: KeyObject, kid: string): Promise<JWK> {
  return { ...(await exportJWK(key)), kid, alg: 'RS256', use: 'sig' }
}

describe('jwt auth with a JWKS', () => {
  const k2 = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const k3 = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const jwksConfig = (up: Upstream, url: string, leeway = '0s'): string => `
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: jwks
    match: { path: /* }
    upstream: api
    auth: { type: jwt, jwt: { jwks: "${url}", issuer: "https://idp.test/", audience: api, algorithms: [RS256], leeway: ${leeway} } }
`

  it('refreshes once on an unknown kid, at most once per 30 s, and keeps the last keys while the server is down', async () => {
    const up = await startUpstream()
    const idp = await startJwks([await jwk(rsa.publicKey, 'k1')])
    const gw = await startGateway(jwksConfig(up, idp.url))
    expect((await gw.get('/a', bearer(await sign('RS256', rsa.privateKey, { kid: 'k1' })))).status).toBe(200)
    expect(idp.hits).toBe(1) // fetched at load
    // The IdP rotates: k2 is published; a token naming it triggers one refresh.
    idp.keys = [await jwk(rsa.publicKey, 'k1'), await jwk(k2.publicKey, 'k2')]
    expect((await gw.get('/b', bearer(await sign('RS256', k2.privateKey, { kid: 'k2', sub: 'bob' })))).status).toBe(200)
    expect(idp.hits).toBe(2)
    // k3 is published too, but within 30 s of that refresh a new kid gets no fetch: 401, the server not asked.
    idp.keys = [...idp.keys, await jwk(k3.publicKey, 'k3')]
    for (let i = 0; i < 10; i++) {
      expectRefused(await gw.get('/c', bearer(await sign('RS256', k3.privateKey, { kid: 'k3', sub: `made-up-${i}` }))), 'invalid')
    }
    expect(idp.hits).toBe(2)
    // The IdP goes down (503, then closed): fresh tokens of known kids still pass, also after a reload
    // that rebuilds the route's auth step (another leeway).
    idp.status = 503
    expect((await gw.get('/d', bearer(await sign('RS256', k2.privateKey, { kid: 'k2', sub: 'carol' })))).status).toBe(200)
    await idp.close()
    expect(await gw.rewrite(jwksConfig(up, idp.url, '5s'))).toBe('applied')
    expect((await gw.get('/e', bearer(await sign('RS256', rsa.privateKey, { kid: 'k1', sub: 'dave' })))).status).toBe(200)
    expect(up.requests.map((r) => r.headers['x-consumer'])).toEqual(['alice', 'bob', 'carol', 'dave'])
  })

  it('starts while the JWKS cannot be fetched, answers 401 meanwhile, and serves once it can be', async () => {
    const up = await startUpstream()
    const idp = await startJwks([await jwk(rsa.publicKey, 'k1')])
    idp.status = 503
    const gw = await startGateway(jwksConfig(up, idp.url))
    const token = await sign('RS256', rsa.privateKey, { kid: 'k1' })
    expectRefused(await gw.get('/a', bearer(token)), 'invalid')
    idp.status = 200
    // While no set was ever fetched, a request may fetch again every 5 s.
    const deadline = Date.now() + 20_000
    let status = 401
    while (status !== 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500))
      status = (await gw.get('/a', bearer(token))).status
    }
    expect(status).toBe(200)
    expect(idp.hits).toBeGreaterThanOrEqual(2)
    expect(idp.hits).toBeLessThanOrEqual(3)
  })
})
