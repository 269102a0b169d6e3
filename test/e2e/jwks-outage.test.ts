// A JWKS outage seen by the operator (README "Authentication"), on the built gateway as a real process
// against real JWKS servers on 127.0.0.1: when fetching the set starts failing the log gets one warn line
// (not one per request), when it succeeds again one info line; /status shows each JWT route's set: keys in
// use, the last good fetch and the last error (null when fine). Meanwhile the last good keys keep serving.
import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import http from 'node:http'
import { exportJWK, SignJWT } from 'jose'
import { describe, expect, it } from 'vitest'
import { httpRequest, spawnGateway, type GatewayProcess } from '../helpers/gateway.js'
import { listenForTest } from '../helpers/listen.js'
import { startUpstream } from '../helpers/upstream.js'

const k1 = generateKeyPairSync('ec', { namedCurve: 'P-256' })

/** A JWKS server that serves k1, or, while `down`, drops every connection (a network error to the fetch). */
async function startIdp(): Promise<{ url: string; hits: number; down: boolean }> {
  const state = { url: '', hits: 0, down: false }
  const body = JSON.stringify({ keys: [{ ...(await exportJWK(k1.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] })
  const server = http.createServer((req, res) => {
    state.hits++
    if (state.down) {
      req.socket.destroy()
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(body)
  })
  const { port } = await listenForTest(server)
  state.url = `http://127.0.0.1:${port}/jwks.json`
  return state
}

const bearer = async (kid: string, key: KeyObject = k1.privateKey): Promise<Record<string, string>> => ({
  authorization: 'Bearer ' + await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid }).setSubject('alice').setExpirationTime('10m').sign(key),
})

interface JwksShown { url: string; keys: number; kids: string[]; lastFetchAt: string | null; lastError: string | null; lastErrorAt: string | null }

async function jwksOf(gw: GatewayProcess, route: string): Promise<JwksShown> {
  const status = (await httpRequest(gw.adminUrl + '/status')).json() as { routes: Array<{ id: string; jwks?: JwksShown }> }
  return status.routes.find((r) => r.id === route)!.jwks!
}

/** The gateway's JSON log lines about JWKS sets. */
function jwksLines(gw: GatewayProcess): Array<{ level: number; msg: string; jwks: string }> {
  return gw.stdout().split('\n').filter((l) => l.startsWith('{') && l.includes('"msg":"jwks: '))
    .map((l) => JSON.parse(l) as { level: number; msg: string; jwks: string })
}

describe('JWKS outages', () => {
  it('logs one warn when fetching fails and one info when it works again, and /status shows the set', async () => {
    const up = await startUpstream()
    const steady = await startIdp() // fetched at start, then goes down
    const late = await startIdp() // down at start, then comes up
    late.down = true
    const route = (id: string, url: string): string =>
      `  - { id: ${id}, match: { path: /${id}/* }, upstream: api, auth: { type: jwt, jwt: { jwks: "${url}", algorithms: [ES256] } } }`
    const gw = await spawnGateway(`
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
${route('steady', steady.url)}
${route('late', late.url)}
  - { id: open, match: { path: /open }, upstream: api }
`)
    const k1Token = await bearer('k1')
    expect((await httpRequest(gw.url + '/steady/a', { headers: k1Token })).status).toBe(200)
    const fine = await jwksOf(gw, 'steady')
    expect(fine).toMatchObject({ url: steady.url, keys: 1, kids: ['k1'], lastError: null, lastErrorAt: null })
    expect(fine.lastFetchAt).not.toBeNull()
    // A route without auth shows no jwks field.
    const open = ((await httpRequest(gw.adminUrl + '/status')).json() as { routes: Array<{ id: string }> }).routes.find((r) => r.id === 'open')!
    expect(open).not.toHaveProperty('jwks')

    // steady's IdP goes down; a token with an unknown kid makes the gateway look (a refresh), which fails.
    steady.down = true
    const hitsBefore = steady.hits
    expect((await httpRequest(gw.url + '/steady/b', { headers: await bearer('k9') })).status).toBe(401)
    expect(steady.hits).toBe(hitsBefore + 1)
    await gw.waitForStdout(`"jwks":"${steady.url}"`)
    // The last good keys serve on; more unknown kids within 30 s ask nobody and log nothing.
    expect((await httpRequest(gw.url + '/steady/c', { headers: k1Token })).status).toBe(200)
    for (let i = 0; i < 5; i++) expect((await httpRequest(gw.url + '/steady/d', { headers: await bearer(`k-${i}`) })).status).toBe(401)
    expect(steady.hits).toBe(hitsBefore + 1)
    const failing = await jwksOf(gw, 'steady')
    expect(failing).toMatchObject({ url: steady.url, keys: 1, kids: ['k1'], lastFetchAt: fine.lastFetchAt })
    expect(failing.lastError).toMatch(/fetch failed/)
    expect(failing.lastErrorAt).not.toBeNull()

    // late never had a set: 401 while down (each request may ask again every 5 s), one warn however many fail.
    expect((await httpRequest(gw.url + '/late/a', { headers: k1Token })).status).toBe(401)
    expect(await jwksOf(gw, 'late')).toMatchObject({ keys: 0, kids: [], lastFetchAt: null, lastError: expect.stringMatching(/fetch failed/) })
    // Requests go on failing until one is allowed a second fetch (5 s after the first), which fails too.
    const deadline = Date.now() + 30_000 // two 5 s windows at most, generously
    while (late.hits < 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250))
      expect((await httpRequest(gw.url + '/late/a', { headers: k1Token })).status).toBe(401)
    }
    expect(late.hits).toBe(2)
    // It comes back: the next fetch a request is allowed (within 5 s) brings the keys.
    late.down = false
    let status = 401
    while (status !== 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250))
      status = (await httpRequest(gw.url + '/late/b', { headers: k1Token })).status
    }
    expect(status).toBe(200)
    await gw.waitForStdout('"msg":"jwks: fetched again')
    expect(await jwksOf(gw, 'late')).toMatchObject({ keys: 1, kids: ['k1'], lastError: null, lastErrorAt: null, lastFetchAt: expect.any(String) })

    // Per set, in order (pino levels: 40 warn, 30 info).
    const linesOf = (url: string): Array<[number, string]> => jwksLines(gw).filter((l) => l.jwks === url).map((l) => [l.level, l.msg])
    expect(linesOf(steady.url)).toEqual([[40, 'jwks: fetch failed (TypeError: fetch failed); the last good keys (1) stay in use']])
    expect(linesOf(late.url)).toEqual([
      [40, 'jwks: fetch failed (TypeError: fetch failed); no keys yet: its tokens get 401 until a fetch succeeds'],
      [30, 'jwks: fetched again; its keys are in use'],
    ])
  }, 90_000) // two 5 s retry windows of a set never fetched, and a loaded machine
})
