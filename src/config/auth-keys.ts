// The key material of `auth: { type: jwt }` (README "Authentication"), checked at load like the files of
// `tls:` so that a missing key file, PEM garbage, a key that cannot make the configured algorithms, or an
// HMAC algorithm next to a public key is a config error located at its key (`routes.yaml:12:20
// routes[0].auth.jwt.publicKey: ...`), `validate` reports it, and a reload that brings one is refused while
// the keys in force keep serving.
//
// `publicKey` is a PEM file (relative to the config file) or the PEM text: load.ts reads the files
// (readJwtKeyFiles), so the loaded Config carries the PEM (a cluster worker gets it with its config, and a
// changed file is a changed reuse key). etcd holds PEM text only: it has no directory to read a path from.
//
// Algorithm confusion (an HS256 token whose HMAC secret is the RS256 public key, CVE-2015-9235 and its
// many descendants) is closed twice: a route's algorithms are either all HMAC (with `secret`) or all
// public-key (with `publicKey` or `jwks`), never both; and jose refuses a public KeyObject as an HMAC key.
import { createPublicKey, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import type { ConfigIssue } from '../errors.js'
import type { Locate } from './check.js'
import type { Config, JWT_ALGORITHMS } from './schema.js'
import { formatPath, type PathSegment } from './validate-value.js'

export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number]

/** The settings of a route's `auth.jwt` as check.ts and the table builder read them (durations in ms). */
export interface JwtSettings {
  readonly secret?: string
  readonly publicKey?: string
  readonly jwks?: string
  readonly algorithms?: readonly JwtAlgorithm[]
}

/** RFC 7518 §3.2: an HMAC key at least as long as the hash output; 32 bytes for HS256. */
const MIN_SECRET_BYTES: Record<string, number> = { HS256: 32, HS384: 48, HS512: 64 }

/** True for the PEM text itself rather than a file name. */
export function isPemText(value: string): boolean {
  return value.trimStart().startsWith('-----BEGIN')
}

/**
 * Replaces each route's `auth.jwt.publicKey` file name by the file's PEM text, in the (not yet frozen)
 * config; an unreadable file is an issue at that key. `configFile` is the YAML file.
 */
export function readJwtKeyFiles(config: Config, configFile: string, locate: Locate, isValid: (path: readonly PathSegment[]) => boolean): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  if (!Array.isArray(config.routes)) return issues
  const base = dirname(resolve(configFile))
  config.routes.forEach((route, i) => {
    const jwt = route.auth?.jwt as { publicKey?: string } | undefined
    const path: PathSegment[] = ['routes', i, 'auth', 'jwt', 'publicKey']
    if (jwt?.publicKey === undefined || isPemText(jwt.publicKey) || !isValid(path)) return
    const file = resolve(base, jwt.publicKey)
    try {
      const text = readFileSync(file, 'utf8')
      if (isPemText(text)) jwt.publicKey = text
      else issues.push({ where: locate(path), path: formatPath(path), message: `${file} holds no PEM (no -----BEGIN line); give a "BEGIN PUBLIC KEY" file or a certificate`, severity: 'error' })
    } catch (err) {
      const code = err instanceof Error && 'code' in err ? err.code : undefined
      const reason = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : String(code ?? err)
      issues.push({ where: locate(path), path: formatPath(path), message: `cannot read the public key file ${file}: ${reason}`, severity: 'error' })
    }
  })
  return issues
}

/** The public key of a PEM text, or a message saying why not. */
export function parsePublicKey(pem: string): KeyObject | string {
  try {
    // A certificate or a private key gives its public key too; a secret never parses here.
    return createPublicKey(pem)
  } catch (err) {
    return `not a PEM public key (${err instanceof Error ? err.message.split('\n')[0] : String(err)}); give an SPKI "BEGIN PUBLIC KEY" PEM, a certificate, or a file holding one`
  }
}

/** The algorithms a key of this type can verify. */
function algorithmsOfKey(key: KeyObject): readonly JwtAlgorithm[] {
  switch (key.asymmetricKeyType) {
    case 'rsa': return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']
    case 'rsa-pss': return ['PS256', 'PS384', 'PS512']
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve
      return curve === 'prime256v1' ? ['ES256'] : curve === 'secp384r1' ? ['ES384'] : curve === 'secp521r1' ? ['ES512'] : []
    }
    case 'ed25519': case 'ed448': return ['EdDSA']
    default: return []
  }
}

/**
 * The route's accepted algorithms: `algorithms`, else HS256 with a secret, RS256 with a JWKS URL, and the
 * key's first algorithm with a public key. Only for settings check.ts passed.
 */
export function jwtAlgorithms(jwt: JwtSettings, key: KeyObject | null): readonly JwtAlgorithm[] {
  if (jwt.algorithms !== undefined) return jwt.algorithms
  if (jwt.secret !== undefined) return ['HS256']
  if (key !== null) return algorithmsOfKey(key).slice(0, 1)
  return ['RS256']
}

/** Every problem of a route's `auth.jwt`, as [field, message]; none for a usable one. */
export function jwtProblems(jwt: JwtSettings): Array<[string | null, string]> {
  const problems: Array<[string | null, string]> = []
  const sources = (['secret', 'publicKey', 'jwks'] as const).filter((s) => jwt[s] !== undefined)
  if (sources.length !== 1) {
    problems.push([sources[1] ?? null, sources.length === 0
      ? 'jwt needs one key source: secret (HS256), publicKey (a PEM file) or jwks (a URL)'
      : `jwt has ${sources.join(' and ')}: give exactly one key source`])
    return problems
  }
  const hmac = (jwt.algorithms ?? []).filter((a) => a.startsWith('HS'))
  const asymmetric = (jwt.algorithms ?? []).filter((a) => !a.startsWith('HS'))
  if (jwt.secret !== undefined) {
    if (asymmetric.length > 0) problems.push(['algorithms', `${asymmetric.join(', ')} need(s) a public key, not a secret: with secret only HS256, HS384 or HS512`])
    const bytes = Buffer.byteLength(jwt.secret)
    const need = Math.max(32, ...jwtAlgorithms(jwt, null).map((a) => MIN_SECRET_BYTES[a] ?? 0))
    if (bytes < need) problems.push(['secret', `the secret has ${bytes} bytes; HMAC needs at least ${need} (RFC 7518 §3.2), e.g. openssl rand -base64 48`])
    return problems
  }
  // A public key or a JWKS: an HMAC algorithm here is the algorithm-confusion door.
  if (hmac.length > 0) problems.push(['algorithms', `${hmac.join(', ')} with ${sources[0]}: an HMAC algorithm next to a public key lets a token signed with the public key as HMAC secret in (algorithm confusion); use secret for HS*`])
  if (jwt.publicKey !== undefined) {
    // load.ts made every file name of routes.yaml its PEM text: a name left here came from etcd.
    if (!isPemText(jwt.publicKey)) {
      problems.push(['publicKey', 'a file name is read only from routes.yaml; in etcd give the PEM text itself ("-----BEGIN PUBLIC KEY-----\\n...")'])
      return problems
    }
    const key = parsePublicKey(jwt.publicKey)
    if (typeof key === 'string') {
      problems.push(['publicKey', key])
      return problems
    }
    const usable = algorithmsOfKey(key)
    const wrong = jwtAlgorithms(jwt, key).filter((a) => !a.startsWith('HS') && !usable.includes(a))
    if (usable.length === 0) problems.push(['publicKey', `a ${key.asymmetricKeyType ?? 'unknown'} key verifies none of the JWT algorithms`])
    else if (wrong.length > 0) problems.push(['algorithms', `${wrong.join(', ')} cannot be verified with this ${key.asymmetricKeyType} key; it verifies ${usable.join(', ')}`])
  }
  return problems
}
