// Rate-limit settings that cannot work are refused at load, each as one `file:line:col path: reason` line.
import { describe, expect, it } from 'vitest'
import { loadConfigText } from '../../src/config/load.js'
import { ConfigError, formatIssue } from '../../src/errors.js'

function errorsOf(text: string): string[] {
  try {
    loadConfigText(text, 'routes.yaml', {})
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.filter((i) => i.severity === 'error' && !i.message.startsWith('the config has no routes')).map(formatIssue)
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
    rateLimit:
`

describe('rateLimit config errors', () => {
  it('refuses rate: 0, burst: 0 and a key of an unknown kind, each at its line and column', () => {
    expect(errorsOf(head + '      - { algorithm: token-bucket, rate: 0, burst: 0, key: "cookie:sid" }\n')).toEqual([
      'routes.yaml:8:42 routes[0].rateLimit[0].rate: must be a number > 0, got 0',
      'routes.yaml:8:52 routes[0].rateLimit[0].burst: must be an integer >= 1, got 0',
      'routes.yaml:8:60 routes[0].rateLimit[0].key: must be client-ip, route, consumer, header:<name> or query:<name> (comma-separated to combine), got "cookie:sid"',
    ])
  })

  it('refuses scope: cluster without a redis: section', () => {
    expect(errorsOf(head + '      - { algorithm: sliding-window, limit: 5, window: 1s, scope: cluster }\n')).toEqual([
      'routes.yaml:8:67 routes[0].rateLimit[0].scope: scope "cluster" needs a top-level redis: section (url or cluster); or use scope "local"',
    ])
  })

  it('refuses a limiter name used twice on a route, also when one of them is a default name', () => {
    const errors = errorsOf(head + [
      '      - { name: a, algorithm: token-bucket, rate: 1 }',
      '      - { name: a, algorithm: token-bucket, rate: 2 }',
      '      - { algorithm: token-bucket, rate: 3 }',
      '      - { name: token-bucket-2, algorithm: token-bucket, rate: 4 }',
    ].join('\n') + '\n')
    expect(errors).toEqual([
      'routes.yaml:9:17 routes[0].rateLimit[1].name: limiter name "a" is used twice on this route: rateLimit[0] (routes.yaml:8:9) already uses it; names label metrics and Redis keys',
      'routes.yaml:11:17 routes[0].rateLimit[3].name: limiter name "token-bucket-2" is used twice on this route: rateLimit[2] (routes.yaml:10:9) already uses it; names label metrics and Redis keys',
    ])
  })

  it('accepts the same limiter name on two routes', () => {
    expect(errorsOf(`upstreams:
  up: { targets: [{ url: http://127.0.0.1:9 }] }
routes:
  - { id: a, match: { path: /a }, upstream: up, rateLimit: [{ name: n, algorithm: token-bucket, rate: 1 }] }
  - { id: b, match: { path: /b }, upstream: up, rateLimit: [{ name: n, algorithm: token-bucket, rate: 1 }] }
`)).toEqual([])
  })

  it('needs redis.url or redis.cluster, not both', () => {
    expect(errorsOf('redis: { timeout: 50ms }\n')).toEqual(['routes.yaml:1:8 redis: needs url (one Redis) or cluster (Redis Cluster seed nodes)'])
    expect(errorsOf('redis: { url: "redis://127.0.0.1:6379", cluster: ["redis://127.0.0.1:7000"] }\n')).toEqual([
      'routes.yaml:1:50 redis.cluster: give either url or cluster, not both',
    ])
  })
})
