// Access lists and key auth that cannot work are refused at load, each as one `file:line:col path: reason` line.
import { describe, expect, it } from 'vitest'
import { loadConfigText } from '../../src/config/load.js'
import { ConfigError, formatIssue } from '../../src/errors.js'

function errorsOf(text: string): string[] {
  try {
    loadConfigText(text, 'routes.yaml', {})
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
  it('refuses jwt and basic as not supported yet', () => {
    expect(errorsOf(head + '    auth: { type: jwt }\n')).toEqual([
      'routes.yaml:7:19 routes[0].auth.type: auth type "jwt" is not supported yet; only "key" (API keys) is',
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
})
