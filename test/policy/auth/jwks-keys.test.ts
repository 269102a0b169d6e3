// A JWKS key set against a real HTTP server on 127.0.0.1: a refresh that fails (503, not JSON, not a JWKS,
// connection refused) keeps the last good keys; the refresh budget, shortened here (30 s in the gateway),
// still allows one fetch per interval.
import { generateKeyPairSync } from 'node:crypto'
import http from 'node:http'
import { exportJWK, jwtVerify, SignJWT, type JWK } from 'jose'
import { describe, expect, it } from 'vitest'
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
})
