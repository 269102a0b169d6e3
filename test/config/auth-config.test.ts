// Access lists and auth (key, jwt, basic) that cannot work are refused at load, each as one `file:line:col path: reason` line.
import { describe, expect, it } from 'vitest'
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { jwtProblems } from '../../src/config/auth-keys.js'
import { loadConfigText } from '../../src/config/load.js'
import { ConfigError, formatIssue } from '../../src/errors.js'

function errorsOf(text: string): string[] {
  return errorsIn(text, 'routes.yaml')
}

function errorsIn(text: string, file: string): string[] {
  try {
    loadConfigText(text, file, {})
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.filter((i) => i.severity === 'error').map(formatIssue)
    throw err
  }
  return []
}

const head = `upstreams:
  up: { targets: [{ url: http://127.0.0.1:9 }] }
routes:
  - id: r
    match: { path: /a }
    upstream: up
`
const HASH = 'sha256:' + 'a'.repeat(64)
const SECRET = 'a-secret-of-at-least-32-bytes-0123456789'
const BCRYPT = '$2b$10$tteEXdNf1a7vS/smXJSsE.0iaXbe5FAft7Ai4mytZrpYr/0mv6YZm'

describe('access config errors', () => {
  it('refuses a CIDR that is no CIDR, with host bits or too long a prefix, at its line and column', () => {
    expect(errorsOf(head + '    access: { allow: [10.0.0.1/8, "2001:db8::/129"], deny: [300.1.2.3, "hello"] }\n')).toEqual([
      'routes.yaml:7:23 routes[0].access.allow[0]: "10.0.0.1/8" has bits set after the /8 prefix (host bits): the network is 10.0.0.0/8',
      'routes.yaml:7:35 routes[0].access.allow[1]: prefix length /129 is longer than 128 (IPv6)',
      'routes.yaml:7:61 routes[0].access.deny[0]: "300.1.2.3" is not an IPv4 address (a.b.c.d, each 0-255)',
      'routes.yaml:7:72 routes[0].access.deny[1]: must be a CIDR such as 10.0.0.0/8 or 2001:db8::/32, or one address, got "hello"',
    ])
  })

  it('accepts IPv4, IPv6, mapped and bare addresses', () => {
    expect(errorsOf(head + '    access: { allow: [10.0.0.0/8, "2001:db8::/32", 192.0.2.1, "::ffff:10.0.0.0/104", "::1"] }\n')).toEqual([])
  })
})

describe('auth config errors', () => {
  it('refuses jwt without one key source, and basic without consumers, naming the block', () => {
    expect(errorsOf(head + '    auth: { type: jwt }\n')).toEqual([
      'routes.yaml:7:11 routes[0].auth: auth type "jwt" needs jwt: { secret | publicKey | jwks, issuer, audience, algorithms }',
    ])
    expect(errorsOf(head + '    auth: { type: jwt, jwt: { issuer: x } }\n')).toEqual([
      'routes.yaml:7:29 routes[0].auth.jwt: jwt needs one key source: secret (HS256), publicKey (a PEM file) or jwks (a URL)',
    ])
    expect(errorsOf(head + `    auth: { type: jwt, jwt: { secret: "${SECRET}", jwks: "http://127.0.0.1:9/jwks" } }\n`)).toEqual([
      'routes.yaml:7:89 routes[0].auth.jwt.jwks: jwt has secret and jwks: give exactly one key source',
    ])
    expect(errorsOf(head + '    auth: { type: basic, basic: { consumers: {} } }\n')).toEqual([
      'routes.yaml:7:46 routes[0].auth.basic.consumers: no consumers: every request would get 401',
    ])
    expect(errorsOf(head + '    auth: { type: basic, key: { consumers: {} } }\n')).toEqual([
      'routes.yaml:7:11 routes[0].auth: auth type "basic" needs basic: { consumers: { <name>: { passwordHash: "$2b$..." } } }',
    ])
  })

  it('refuses an unknown algorithm, alg none, a short secret, and HMAC next to a public key (algorithm confusion)', () => {
    const [none] = errorsOf(head + `    auth: { type: jwt, jwt: { secret: "${SECRET}", algorithms: [none] } }\n`)
    expect(none).toMatch(/^routes\.yaml:7:\d+ routes\[0\]\.auth\.jwt\.algorithms\[0\]: .*HS256.*"none"/)
    expect(errorsOf(head + '    auth: { type: jwt, jwt: { secret: short } }\n')).toEqual([
      'routes.yaml:7:39 routes[0].auth.jwt.secret: the secret has 5 bytes; HMAC needs at least 32 (RFC 7518 §3.2), e.g. openssl rand -base64 48',
    ])
    expect(errorsOf(head + '    auth: { type: jwt, jwt: { jwks: "http://127.0.0.1:9/jwks", algorithms: [RS256, HS256] } }\n')).toEqual([
      'routes.yaml:7:76 routes[0].auth.jwt.algorithms: HS256 with jwks: an HMAC algorithm next to a public key lets a token signed with the public key as HMAC secret in (algorithm confusion); use secret for HS*',
    ])
    expect(errorsOf(head + `    auth: { type: jwt, jwt: { secret: "${SECRET}", algorithms: [RS256] } }\n`)).toEqual([
      'routes.yaml:7:95 routes[0].auth.jwt.algorithms: RS256 need(s) a public key, not a secret: with secret only HS256, HS384 or HS512',
    ])
  })

  it('reads a publicKey file next to the config, and refuses a missing one, garbage, or an algorithm the key cannot make', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-jwt-config-'))
    try {
      const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }) as string
      const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }) as string
      writeFileSync(join(dir, 'rsa.pem'), rsa)
      writeFileSync(join(dir, 'ec.pem'), ec)
      writeFileSync(join(dir, 'junk.pem'), 'hello')
      const file = join(dir, 'routes.yaml')
      const jwt = (fields: string): string => head + `    auth: { type: jwt, jwt: { ${fields} } }\n`
      expect(errorsIn(jwt('publicKey: rsa.pem'), file)).toEqual([])
      expect(errorsIn(jwt('publicKey: ec.pem, algorithms: [ES256]'), file)).toEqual([])
      expect(errorsIn(jwt('publicKey: gone.pem'), file)).toEqual([
        `${file}:7:42 routes[0].auth.jwt.publicKey: cannot read the public key file ${join(dir, 'gone.pem')}: no such file`,
      ])
      expect(errorsIn(jwt('publicKey: junk.pem'), file)).toEqual([
        `${file}:7:42 routes[0].auth.jwt.publicKey: ${join(dir, 'junk.pem')} holds no PEM (no -----BEGIN line); give a "BEGIN PUBLIC KEY" file or a certificate`,
      ])
      writeFileSync(join(dir, 'broken.pem'), '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n')
      const [broken] = errorsIn(jwt('publicKey: broken.pem'), file)
      expect(broken).toMatch(new RegExp(`^${file}:7:42 routes\\[0\\]\\.auth\\.jwt\\.publicKey: not a PEM public key \\(.*\\); give an SPKI`))
      expect(errorsIn(jwt('publicKey: ec.pem, algorithms: [RS256]'), file)).toEqual([
        `${file}:7:62 routes[0].auth.jwt.algorithms: RS256 cannot be verified with this ec key; it verifies ES256`,
      ])
      // The PEM text itself works too (the only form etcd can hold).
      expect(errorsIn(jwt(`publicKey: ${JSON.stringify(rsa)}, algorithms: [RS256, PS256]`), file)).toEqual([])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('says that a publicKey file name works only in routes.yaml when one reaches the checks (an etcd route)', () => {
    expect(jwtProblems({ publicKey: 'keys/idp.pem' })).toEqual([
      ['publicKey', 'a file name is read only from routes.yaml; in etcd give the PEM text itself ("-----BEGIN PUBLIC KEY-----\\n...")'],
    ])
  })

  it('refuses a basic passwordHash that is neither bcrypt nor argon2, and forwardConsumer: authorization', () => {
    const [md5] = errorsOf(head + '    auth: { type: basic, basic: { consumers: { ops: { passwordHash: "5f4dcc3b5aa765d61d8327deb882cf99" } } } }\n')
    expect(md5).toMatch(/^routes\.yaml:7:\d+ routes\[0\]\.auth\.basic\.consumers\.ops\.passwordHash: /)
    expect(errorsOf(head + `    auth: { type: basic, basic: { consumers: { ops: { passwordHash: "${BCRYPT}" } } }, forwardConsumer: Authorization }\n`)).toEqual([
      `routes.yaml:7:${'    auth: { type: basic, basic: { consumers: { ops: { passwordHash: "'.length + BCRYPT.length + 27} routes[0].auth.forwardConsumer: "authorization" carries the credential; name another header`,
    ])
  })

  it('refuses a keyHash that is not sha256 hex, key auth without key:, and one hash for two consumers', () => {
    expect(errorsOf(head + `    auth: { type: key, key: { consumers: { a: { keyHash: "md5:abc" } } } }\n`)).toEqual([
      'routes.yaml:7:58 routes[0].auth.key.consumers.a.keyHash: must be sha256: and 64 lower-case hex digits (the SHA-256 of the key), got "md5:abc"',
    ])
    expect(errorsOf(head + '    auth: { type: key }\n')).toEqual([
      'routes.yaml:7:11 routes[0].auth: auth type "key" needs key: { header, consumers: { <name>: { keyHash: "sha256:<hex>" } } }',
    ])
    expect(errorsOf(head + `    auth: { type: key, key: { consumers: { a: { keyHash: "${HASH}" }, b: { keyHash: "${HASH}" } } } }\n`)).toEqual([
      `routes.yaml:7:149 routes[0].auth.key.consumers.b.keyHash: consumers "a" (routes.yaml:7:58) and "b" have the same keyHash: one key must name one consumer`,
    ])
  })

  it('refuses a consumer limiter key on a route without auth, and forwardConsumer naming the key header', () => {
    expect(errorsOf(head + '    rateLimit: [{ algorithm: token-bucket, rate: 1, key: consumer }]\n')).toEqual([
      'routes.yaml:7:58 routes[0].rateLimit[0].key: key "consumer" needs the route to have auth: (the consumer is who the key belongs to); add auth:, or key by client-ip or header:<name>',
    ])
    expect(errorsOf(head + `    auth: { type: key, key: { consumers: { a: { keyHash: "${HASH}" } } }, forwardConsumer: X-Api-Key }\n`)).toEqual([
      'routes.yaml:7:156 routes[0].auth.forwardConsumer: "X-Api-Key" is also the key header: the key would be replaced by the consumer name; name another header',
    ])
    expect(errorsOf(head + `    auth: { type: key, key: { consumers: { a: { keyHash: "${HASH}" } } } }\n    rateLimit: [{ algorithm: token-bucket, rate: 1, key: "consumer,client-ip" }]\n`)).toEqual([])
  })

  it('refuses an auth.allow name that is not a key or basic consumer (a typo would lock the consumer out), not a jwt sub', () => {
    const keyLine = `    auth: { type: key, key: { consumers: { acme: { keyHash: "${HASH}" } } }, allow: [acme, acmee] }\n`
    expect(errorsOf(head + keyLine)).toEqual([
      `routes.yaml:7:${keyLine.indexOf('acmee') + 1} routes[0].auth.allow[1]: "acmee" is not a consumer of this route (auth.key.consumers has "acme"); add it there or remove it here`,
    ])
    const basicLine = `    auth: { type: basic, basic: { consumers: { ops: { passwordHash: "${BCRYPT}" } } }, allow: [dev] }\n`
    expect(errorsOf(head + basicLine)).toEqual([
      `routes.yaml:7:${basicLine.indexOf('dev]') + 1} routes[0].auth.allow[0]: "dev" is not a consumer of this route (auth.basic.consumers has "ops"); add it there or remove it here`,
    ])
    expect(errorsOf(head + `    auth: { type: key, key: { consumers: { acme: { keyHash: "${HASH}" } } }, allow: [acme] }\n`)).toEqual([])
    // A JWT route's consumers are sub claims the identity provider signs: any name may be listed.
    expect(errorsOf(head + `    auth: { type: jwt, jwt: { secret: "${'s'.repeat(32)}" }, allow: [user-1, "auth0|42"] }\n`)).toEqual([])
    // An empty list would refuse everyone: the schema wants one name at least.
    expect(errorsOf(head + `    auth: { type: jwt, jwt: { secret: "${'s'.repeat(32)}" }, allow: [] }\n`)[0]).toMatch(/^routes\.yaml:7:\d+ routes\[0\]\.auth\.allow: /)
  })
})
