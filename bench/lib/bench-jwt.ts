// The RS256 key pair and token of scenario jwt-auth and of the JWT micro-benchmark, made once per process on
// first use (an RSA key takes ~50 ms to generate: not at import). The token is a compact JWS built with
// node:crypto's RSA-SHA256 signature, synchronously, because scenarios are plain data read synchronously;
// its exp lies far ahead, so it never expires during a run.
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto'

export interface BenchJwt {
  readonly publicKeyPem: string
  readonly privateKey: KeyObject
  /** sub "bench", iss https://idp.bench/, aud bench. */
  readonly token: string
}

let made: BenchJwt | null = null

export function benchJwt(): BenchJwt {
  if (made !== null) return made
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  made = { publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string, privateKey, token: signRs256(privateKey, { sub: 'bench' }) }
  return made
}

/** A compact RS256 JWS of `claims` plus iss, aud and an exp in 2100. */
export function signRs256(privateKey: KeyObject, claims: Record<string, unknown>): string {
  const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
  const input = `${part({ alg: 'RS256', typ: 'JWT' })}.${part({ iss: 'https://idp.bench/', aud: 'bench', exp: 4102444800, ...claims })}`
  return `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`
}
