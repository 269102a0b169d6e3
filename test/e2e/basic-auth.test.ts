// Basic auth through the real gateway (README "Authentication"): bcrypt and argon2 hashes made with the
// same libraries an operator would use; 401 with `Basic realm="tollgate"` for missing, malformed, unknown
// or wrong credentials, never forwarded; the user name forwarded as the consumer and Authorization never;
// a success cached (one hash per keep-alive client, not per request), a failure never; the hash run off
// the event loop, so other requests are served meanwhile.
import { hash as argon2Hash } from '@node-rs/argon2'
import { hash as bcryptHash } from '@node-rs/bcrypt'
import { describe, expect, it } from 'vitest'
import { startGateway, type Response } from '../helpers/gateway.js'
import { startUpstream, type Upstream } from '../helpers/upstream.js'

const basic = (user: string, password: string): Record<string, string> =>
  ({ authorization: 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64') })

function failures(metrics: string, route: string, reason: string): number {
  const m = new RegExp(`^tollgate_auth_failures_total\\{route="${route}",reason="${reason}"\\} (\\d+)$`, 'm').exec(metrics)
  return m === null ? 0 : Number(m[1])
}

function expectRefused(r: Response, message: string): void {
  expect(r.status).toBe(401)
  expect(r.headers['www-authenticate']).toBe('Basic realm="tollgate", charset="UTF-8"')
  expect(r.headers['x-tollgate-error']).toBe('UNAUTHORIZED')
  expect(r.json()).toEqual({ code: 'UNAUTHORIZED', message })
}

const BAD = 'the user name or password is not valid'
const MISSING = 'no basic credentials in the request'

async function config(up: Upstream, opsCost = 10): Promise<string> {
  return `
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: admin
    match: { path: /admin/* }
    upstream: api
    auth:
      type: basic
      basic:
        consumers:
          ops: { passwordHash: "${await bcryptHash('correct horse', opsCost)}" }
          dev: { passwordHash: "${await argon2Hash('battery staple')}" }
  - { id: open, match: { path: /open }, upstream: api }
`
}

describe('basic auth', () => {
  it('lets bcrypt and argon2 users in, forwards the user as consumer, and never the Authorization header', async () => {
    const up = await startUpstream()
    const gw = await startGateway(await config(up))
    expect((await gw.get('/admin/a', { ...basic('ops', 'correct horse'), 'x-consumer': 'root' })).status).toBe(200)
    expect((await gw.get('/admin/b', basic('dev', 'battery staple'))).status).toBe(200)
    expect((await gw.get('/admin/c', { authorization: 'basic ' + Buffer.from('ops:correct horse').toString('base64') })).status).toBe(200)
    expect(up.requests.map((r) => r.headers['x-consumer'])).toEqual(['ops', 'dev', 'ops'])
    for (const seen of up.requests) expect(seen.headers.authorization).toBeUndefined()
  })

  it('refuses a wrong password, an unknown user and a malformed header as invalid, no credentials as missing', async () => {
    const up = await startUpstream()
    const gw = await startGateway(await config(up))
    expectRefused(await gw.get('/admin/a', basic('ops', 'Correct horse')), BAD)
    expectRefused(await gw.get('/admin/a', basic('dev', 'correct horse')), BAD) // another user's password
    expectRefused(await gw.get('/admin/a', basic('nobody', 'correct horse')), BAD)
    expectRefused(await gw.get('/admin/a', { authorization: 'Basic ' + Buffer.from('ops').toString('base64') }), BAD) // no colon
    expectRefused(await gw.get('/admin/a', { authorization: 'Basic !!!' }), BAD)
    expectRefused(await gw.get('/admin/a', { authorization: 'Basic ' + Buffer.from(':correct horse').toString('base64') }), BAD)
    expectRefused(await gw.get('/admin/a'), MISSING)
    expectRefused(await gw.get('/admin/a', { authorization: 'Bearer abc' }), MISSING)
    expectRefused(await gw.get('/admin/a', { authorization: 'Basic' }), MISSING)
    expect(up.hits).toBe(0)
    const metrics = (await gw.admin('/metrics')).body
    expect(failures(metrics, 'admin', 'invalid')).toBe(6)
    expect(failures(metrics, 'admin', 'missing')).toBe(3)
  })

  it('hashes once for a repeated success, every time for a failure, and never lets a failure in', async () => {
    const up = await startUpstream()
    const gw = await startGateway(await config(up))
    const step = gw.gateway.table.routes.get('admin')!.auth as unknown as { verifications: number }
    for (let i = 0; i < 5; i++) expect((await gw.get('/admin/a', basic('ops', 'correct horse'))).status).toBe(200)
    expect(step.verifications).toBe(1)
    for (let i = 0; i < 3; i++) expectRefused(await gw.get('/admin/a', basic('ops', 'wrong')), BAD)
    expect(step.verifications).toBe(4)
    expect((await gw.get('/admin/a', basic('ops', 'correct horse'))).status).toBe(200)
    expect(step.verifications).toBe(4)
  })

  it('hashes off the event loop: another route answers while a slow hash runs', async () => {
    const up = await startUpstream()
    const gw = await startGateway(await config(up, 13)) // cost 13: hundreds of ms
    const step = gw.gateway.table.routes.get('admin')!.auth as unknown as { verifications: number }
    const order: string[] = []
    const slow = gw.get('/admin/a', basic('ops', 'correct horse')).then((r) => { order.push(`admin ${r.status}`) })
    // Once the hash has started (the gateway runs in this process: a hash on the event loop would hold this
    // loop too, until it ends), ask the open route.
    const deadline = Date.now() + 10_000
    while (step.verifications === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1))
    expect(step.verifications).toBe(1)
    await gw.get('/open').then((r) => { order.push(`open ${r.status}`) })
    await slow
    expect(order).toEqual(['open 200', 'admin 200'])
  })
})
