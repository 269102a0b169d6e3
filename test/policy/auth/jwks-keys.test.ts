// A JWKS key set against a real HTTP server on 127.0.0.1: a refresh that fails (503, not JSON, not a JWKS,
// connection refused) keeps the last good keys; the refresh budget, shortened here (30 s in the gateway),
// still allows one fetch per interval. An outage is told once: one warn when fetches start failing, one info
// when one succeeds again, nothing for the failures in between; status() shows what /status does.
import { generateKeyPairSync } from 'node:crypto'
import http from 'node:http'
import { exportJWK, jwtVerify, SignJWT, type JWK } from 'jose'
import { describe, expect, it, onTestFinished } from 'vitest'
import { JwksKeys } from '../../../src/policy/auth/jwks-keys.js'
import { listenForTest } from '../../helpers/listen.js'

const k1 = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const k2 = generateKeyPairSync('ec', { namedCurve: 'P-256' })

const token = (key: typeof k1, kid: string): Promise<string> =>
  new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid }).setSubject(kid).setExpirationTime('5m').sign(key.privateKey)

async function verifies(keys: JwksKeys, t: string): Promise<boolean> {
  return jwtVerify(t, keys.getKey, { algorithms: ['ES256'] }).then(() => true, () => false)
}

describe('JwksKeys', () => {
  it('keeps the last good keys through failed refreshes of every kind', async () => {
    let body = JSON.stringify({ keys: [{ ...(await exportJWK(k1.publicKey)), kid: 'k1' } satisfies JWK] })
    let status = 200
    let hits = 0
    const server = http.createServer((_req, res) => {
      hits++
      res.writeHead(status, { 'content-type': 'application/json' }).end(body)
    })
    const { port, close } = await listenForTest(server)
    const keys = new JwksKeys(`http://127.0.0.1:${port}/jwks`, { refreshIntervalMs: 1 })
    const t1 = await token(k1, 'k1')
    const t2 = await token(k2, 'k2')
    expect(await verifies(keys, t1)).toBe(true)
    expect(hits).toBe(1)
    for (const [s, b] of [[503, body], [200, 'not json'], [200, '{"keys": "nope"}']] as const) {
      status = s
      body = b
      await new Promise((r) => setTimeout(r, 5))
      expect(await verifies(keys, t2)).toBe(false) // unknown kid: a refresh, which fails
      expect(keys.lastError).not.toBeNull()
      expect(await verifies(keys, t1)).toBe(true) // the old set still serves
    }
    expect(hits).toBe(4)
    await close()
    await new Promise((r) => setTimeout(r, 5))
    expect(await verifies(keys, t2)).toBe(false)
    expect(keys.lastError).toMatch(/fetch failed|ECONNREFUSED/)
    expect(await verifies(keys, t1)).toBe(true)
  })

  it('reports a failing set once per change of state, and shows its keys, last good fetch and last error', async () => {
    const told: Array<[string, Record<string, unknown>, string]> = []
    JwksKeys.reportTo({ warn: (f, m) => told.push(['warn', f, m]), info: (f, m) => told.push(['info', f, m]) })
    onTestFinished(() => JwksKeys.reportTo(null))
    let body = JSON.stringify({ keys: [{ ...(await exportJWK(k1.publicKey)), kid: 'k1' } satisfies JWK, { ...(await exportJWK(k2.publicKey)) } satisfies JWK] })
    let status = 200
    const server = http.createServer((_req, res) => res.writeHead(status, { 'content-type': 'application/json' }).end(body))
    const { port, close } = await listenForTest(server)
    const url = `http://127.0.0.1:${port}/jwks`
    const keys = new JwksKeys(url, { fetchNow: false })
    expect(keys.status()).toEqual({ url, keys: 0, kids: [], lastFetchAt: null, lastError: null, lastErrorAt: null })

    const before = Date.now()
    await keys.refresh()
    const good = keys.status()
    expect(good).toMatchObject({ url, keys: 2, kids: ['k1', null], lastError: null, lastErrorAt: null })
    expect(Date.parse(good.lastFetchAt!)).toBeGreaterThanOrEqual(before - 1)
    expect(told).toEqual([]) // a set that was never failing: nothing to tell

    // Three failures of three kinds in a row: one warn, naming the URL and the first error.
    for (const [s, b] of [[503, body], [200, 'not json'], [200, '{"keys": "nope"}']] as const) {
      status = s
      body = b
      await keys.refresh()
    }
    expect(told).toHaveLength(1)
    expect(told[0]![0]).toBe('warn')
    expect(told[0]![1]).toEqual({ jwks: url, error: 'Error: HTTP 503' })
    expect(told[0]![2]).toBe('jwks: fetch failed (Error: HTTP 503); the last good keys (2) stay in use')
    const failing = keys.status()
    expect(failing).toMatchObject({ url, keys: 2, kids: ['k1', null], lastFetchAt: good.lastFetchAt })
    expect(failing.lastError).toMatch(/^JWKSInvalid/) // the last failure: JSON that is no JWKS
    expect(Date.parse(failing.lastErrorAt!)).toBeGreaterThanOrEqual(Date.parse(good.lastFetchAt!))

    // Back: one info line; the error is gone.
    status = 200
    body = JSON.stringify({ keys: [{ ...(await exportJWK(k2.publicKey)), kid: 'k2' } satisfies JWK] })
    await keys.refresh()
    await keys.refresh()
    expect(told.map(([level]) => level)).toEqual(['warn', 'info'])
    expect(told[1]!.slice(1)).toEqual([{ jwks: url, keys: 1 }, 'jwks: fetched again; its keys are in use'])
    expect(keys.status()).toMatchObject({ keys: 1, kids: ['k2'], lastError: null, lastErrorAt: null })

    // Down for good (connection refused): warn again, once.
    await close()
    await keys.refresh()
    await keys.refresh()
    expect(told.map(([level]) => level)).toEqual(['warn', 'info', 'warn'])
    expect(told[2]![2]).toMatch(/^jwks: fetch failed \(TypeError: fetch failed\); the last good keys \(1\) stay in use$/)
  })

  it('says so when a set that was never fetched cannot be: its tokens get 401 until then', async () => {
    const told: string[] = []
    JwksKeys.reportTo({ warn: (_f, m) => told.push(m), info: (_f, m) => told.push(m) })
    onTestFinished(() => JwksKeys.reportTo(null))
    const server = http.createServer((_req, res) => res.writeHead(500).end())
    const { port } = await listenForTest(server)
    const keys = new JwksKeys(`http://127.0.0.1:${port}/jwks`, { fetchNow: false })
    await keys.refresh()
    await keys.refresh()
    expect(told).toEqual(['jwks: fetch failed (Error: HTTP 500); no keys yet: its tokens get 401 until a fetch succeeds'])
    expect(keys.status()).toMatchObject({ keys: 0, lastFetchAt: null, lastError: 'Error: HTTP 500' })
  })
})
