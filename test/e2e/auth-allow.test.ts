// auth.allow and tollgate_consumer_requests_total through the real gateway (README "Authentication"): a
// consumer with valid credentials that the route's allow list does not name gets 403 FORBIDDEN (SPEC §5),
// is never forwarded and is counted as reason="forbidden", for key, basic and JWT auth alike, and as
// grpc-status 7 PERMISSION_DENIED on a gRPC route. Consumers that pass are counted per consumer only
// where config bounds the names: key and basic consumers (or their allow list), JWT subjects only with
// allow. A reload that removes a consumer removes its series.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { hash as bcryptHash } from '@node-rs/bcrypt'
import { SignJWT } from 'jose'
import { request } from 'undici'
import { describe, expect, it } from 'vitest'
import { startGateway, type Response } from '../helpers/gateway.js'
import { grpcFrame, grpcMessages, startGrpcUpstream } from '../helpers/grpc-upstream.js'
import { MISSING_PROMETHEUS, PROMTOOL_BIN } from '../helpers/prometheus.js'
import { startUpstream, type Upstream } from '../helpers/upstream.js'

const sha = (key: string): string => 'sha256:' + createHash('sha256').update(key).digest('hex')
const ACME = 'acme-key-0001'
const GLOBEX = 'globex-key-0002'
const INITECH = 'initech-key-0003'
const SECRET = 'hs256-secret-for-the-allow-tests-0123456789'
const basic = (user: string, password: string): Record<string, string> =>
  ({ authorization: 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64') })

async function bearer(sub: string): Promise<Record<string, string>> {
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('10m')
    .sign(new TextEncoder().encode(SECRET))
  return { authorization: `Bearer ${token}` }
}

function sample(metrics: string, family: string, labels: string): number | null {
  const escaped = labels.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const m = new RegExp(`^${family}\\{${escaped}\\} (\\d+)$`, 'm').exec(metrics)
  return m === null ? null : Number(m[1])
}
const consumerCount = (metrics: string, route: string, consumer: string): number | null =>
  sample(metrics, 'tollgate_consumer_requests_total', `route="${route}",consumer="${consumer}"`)
const forbidden = (metrics: string, route: string): number | null =>
  sample(metrics, 'tollgate_auth_failures_total', `route="${route}",reason="forbidden"`)

function expectForbidden(r: Response): void {
  expect(r.status).toBe(403)
  expect(r.headers['x-tollgate-error']).toBe('FORBIDDEN')
  expect(r.headers['content-type']).toBe('application/json')
  expect(typeof r.headers['x-request-id']).toBe('string')
  expect(r.headers['www-authenticate']).toBeUndefined() // the credentials were fine: nothing to challenge
  expect(r.json()).toEqual({ code: 'FORBIDDEN', message: 'the consumer is not allowed on this route' })
}

function keyRoute(id: string, path: string, allow: string | null): string {
  return `
  - id: ${id}
    match: { path: ${path} }
    upstream: api
    auth:
      type: key
      key:
        consumers:
          acme: { keyHash: "${sha(ACME)}" }
          globex: { keyHash: "${sha(GLOBEX)}" }
          initech: { keyHash: "${sha(INITECH)}" }
${allow === null ? '' : `      allow: [${allow}]\n`}`
}

const keyConfig = (up: Upstream): string => `
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
${keyRoute('partners', '/partners/*', 'acme, initech')}
${keyRoute('all', '/all/*', null)}
`

describe('auth.allow', () => {
  it('key auth: a listed consumer passes, a valid but unlisted one gets 403 FORBIDDEN, never forwarded, counted as forbidden', async () => {
    const up = await startUpstream()
    const gw = await startGateway(keyConfig(up))
    expect((await gw.get('/partners/x', { 'x-api-key': ACME })).status).toBe(200)
    expect((await gw.get('/partners/x', { 'x-api-key': INITECH })).status).toBe(200)
    expect(up.hits).toBe(2)
    expectForbidden(await gw.get('/partners/x', { 'x-api-key': GLOBEX }))
    expectForbidden(await gw.get('/partners/x', { 'x-api-key': GLOBEX }))
    expect(up.hits).toBe(2)
    // A bad key is still who-are-you (401), not you-may-not (403).
    expect((await gw.get('/partners/x', { 'x-api-key': 'nope' })).status).toBe(401)
    // globex is welcome where no allow list is set.
    expect((await gw.get('/all/x', { 'x-api-key': GLOBEX })).status).toBe(200)

    const metrics = (await gw.admin('/metrics')).body
    expect(forbidden(metrics, 'partners')).toBe(2)
    expect(sample(metrics, 'tollgate_auth_failures_total', 'route="partners",reason="invalid"')).toBe(1)
    expect(forbidden(metrics, 'all')).toBeNull()
    // Counted per consumer that passed; a route with allow names only its allowed consumers.
    expect(consumerCount(metrics, 'partners', 'acme')).toBe(1)
    expect(consumerCount(metrics, 'partners', 'initech')).toBe(1)
    expect(consumerCount(metrics, 'partners', 'globex')).toBeNull()
    // Without allow, every configured consumer has its series from the load on (0 until it comes).
    expect(consumerCount(metrics, 'all', 'globex')).toBe(1)
    expect(consumerCount(metrics, 'all', 'acme')).toBe(0)
    expect(consumerCount(metrics, 'all', 'initech')).toBe(0)
  })

  it('basic auth: the right password of an unlisted user gets 403, the cached second time too; a wrong password 401', async () => {
    const up = await startUpstream()
    const gw = await startGateway(`
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: admin
    match: { path: /admin/* }
    upstream: api
    auth:
      type: basic
      basic:
        consumers:
          ops: { passwordHash: "${await bcryptHash('correct horse', 4)}" }
          dev: { passwordHash: "${await bcryptHash('battery staple', 4)}" }
      allow: [ops]
`)
    expect((await gw.get('/admin/x', basic('ops', 'correct horse'))).status).toBe(200)
    expectForbidden(await gw.get('/admin/x', basic('dev', 'battery staple')))
    expectForbidden(await gw.get('/admin/x', basic('dev', 'battery staple'))) // from the verification cache
    expect((await gw.get('/admin/x', basic('dev', 'wrong'))).status).toBe(401)
    expect(up.hits).toBe(1)
    const metrics = (await gw.admin('/metrics')).body
    expect(forbidden(metrics, 'admin')).toBe(2)
    expect(consumerCount(metrics, 'admin', 'ops')).toBe(1)
    expect(consumerCount(metrics, 'admin', 'dev')).toBeNull()
  })

  it('jwt: allow names subjects, and only then are subjects a metric label (an unbounded sub set is never one)', async () => {
    const up = await startUpstream()
    const gw = await startGateway(`
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: listed
    match: { path: /listed/* }
    upstream: api
    auth: { type: jwt, jwt: { secret: "${SECRET}" }, allow: [alice, "auth0|42"] }
  - id: open
    match: { path: /open/* }
    upstream: api
    auth: { type: jwt, jwt: { secret: "${SECRET}" } }
`)
    expect((await gw.get('/listed/x', await bearer('alice'))).status).toBe(200)
    expect((await gw.get('/listed/x', await bearer('auth0|42'))).status).toBe(200)
    const mallory = await bearer('mallory')
    expectForbidden(await gw.get('/listed/x', mallory))
    expectForbidden(await gw.get('/listed/x', mallory)) // the verified token is cached: still 403
    expect(up.hits).toBe(2)
    expect((await gw.get('/open/x', mallory)).status).toBe(200)
    expect((await gw.get('/open/x', await bearer('bob'))).status).toBe(200)

    const metrics = (await gw.admin('/metrics')).body
    expect(forbidden(metrics, 'listed')).toBe(2)
    expect(consumerCount(metrics, 'listed', 'alice')).toBe(1)
    expect(consumerCount(metrics, 'listed', 'auth0|42')).toBe(1)
    expect(consumerCount(metrics, 'listed', 'mallory')).toBeNull()
    expect(metrics).not.toMatch(/^tollgate_consumer_requests_total\{route="open"/m)
    // A sub with a '|' as a label value: /metrics still passes promtool.
    expect(PROMTOOL_BIN, MISSING_PROMETHEUS).toBeDefined()
    const check = spawnSync(PROMTOOL_BIN!, ['check', 'metrics'], { input: metrics, encoding: 'utf8' })
    expect(check.stdout + check.stderr).toBe('')
    expect(check.status).toBe(0)
  })

  it('a gRPC route answers an unlisted consumer with grpc-status 7 PERMISSION_DENIED in HTTP 200', async () => {
    const grpcUp = await startGrpcUpstream('a')
    const gw = await startGateway(`
upstreams: { echo: { protocol: grpc, targets: [{ url: "${grpcUp.url}" }] } }
routes:
${keyRoute('echo', '/test.Echo/*', 'acme').replace('upstream: api', 'upstream: echo')}
`)
    const call = async (key: string): Promise<{ status: number; headers: Record<string, unknown>; grpcStatus: string | undefined; messages: string[] }> => {
      const r = await request(gw.url + '/test.Echo/Unary', {
        method: 'POST', headers: { 'content-type': 'application/grpc', te: 'trailers', 'x-api-key': key }, body: grpcFrame('hi'),
      })
      const body = Buffer.from(await r.body.arrayBuffer())
      return { status: r.statusCode, headers: r.headers, grpcStatus: r.trailers['grpc-status'] as string | undefined, messages: grpcMessages(body).map(String) }
    }
    const ok = await call(ACME)
    expect(ok.grpcStatus).toBe('0')
    expect(ok.messages).toEqual(['echo:a:hi'])
    const refused = await call(GLOBEX)
    expect(refused.status).toBe(200)
    expect(refused.headers['content-type']).toBe('application/grpc')
    expect(refused.headers['x-tollgate-error']).toBe('FORBIDDEN')
    expect(refused.grpcStatus).toBe('7')
    expect(grpcUp.calls).toHaveLength(1)
  })

  it('a reload that takes a consumer off the list refuses it from then on and drops its series', async () => {
    const up = await startUpstream()
    const gw = await startGateway(keyConfig(up))
    expect((await gw.get('/partners/x', { 'x-api-key': INITECH })).status).toBe(200)
    expect(await gw.rewrite(keyConfig(up).replace('allow: [acme, initech]', 'allow: [acme]'))).toBe('applied')
    expectForbidden(await gw.get('/partners/x', { 'x-api-key': INITECH }))
    expect((await gw.get('/partners/x', { 'x-api-key': ACME })).status).toBe(200)
    const metrics = (await gw.admin('/metrics')).body
    expect(consumerCount(metrics, 'partners', 'initech')).toBeNull()
    expect(consumerCount(metrics, 'partners', 'acme')).toBe(1)
    expect(forbidden(metrics, 'partners')).toBe(1)
  })
})
