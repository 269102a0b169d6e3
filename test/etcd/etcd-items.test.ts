// The merge rules of README.md "Running several instances against etcd" on their own (no etcd needed): etcd
// wins on the same id, every item is validated alone and a bad one keeps its previous version while the
// rest of the batch applies.
import { describe, expect, it } from 'vitest'
import { EtcdItems, type EtcdEntry } from '../../src/etcd/items.js'
import { parseItemKey } from '../../src/etcd/keys.js'
import { loadConfigText } from '../../src/config/load.js'
import type { Config } from '../../src/config/schema.js'

const FILE = loadConfigText(`
upstreams:
  users: { targets: [{ url: "http://127.0.0.1:9001" }] }
routes:
  - { id: users, match: { path: /users/* }, upstream: users }
  - { id: health, match: { path: /healthz }, upstream: users }
`, 'routes.yaml', {}).config

let revision = 100
function put(key: string, value: unknown): EtcdEntry {
  return { key: `/tg/${key}`, value: typeof value === 'string' ? value : JSON.stringify(value), modRevision: ++revision }
}
function del(key: string): EtcdEntry {
  return { key: `/tg/${key}`, value: null, modRevision: ++revision }
}
const routeIds = (c: Config): string[] => c.routes.map((r) => r.id)

describe('etcd keys', () => {
  it('names routes, upstreams and registered instances, and ignores other keys', () => {
    expect(parseItemKey('/tg', '/tg/routes/a')).toEqual({ kind: 'route', id: 'a' })
    expect(parseItemKey('/tg/', '/tg/upstreams/u')).toEqual({ kind: 'upstream', name: 'u' })
    expect(parseItemKey('/tg', '/tg/services/u/10.0.0.1:80')).toEqual({ kind: 'service', upstream: 'u', instance: '10.0.0.1:80' })
    for (const key of ['/tg/routes/', '/tg/routes/a/b', '/tg/services/u', '/tg/services/u/', '/tg/other/x', '/tgx/routes/a', '/tg/routes']) {
      expect(parseItemKey('/tg', key)).toBeNull()
    }
  })
})

describe('merging etcd items into the file config', () => {
  it('replaces the file route with the same id in its place; other etcd routes follow the file routes in key order', () => {
    const items = new EtcdItems('/tg')
    items.replaceAll([
      put('routes/zeta', { match: { path: '/z' }, upstream: 'users' }),
      put('routes/users', { id: 'users', match: { path: '/v2/users/*' }, upstream: 'users' }),
      put('routes/alpha', { match: { path: '/a' }, upstream: 'users' }),
    ], revision)
    const { config, newRejections } = items.merge(FILE)
    expect(newRejections).toEqual([])
    expect(routeIds(config)).toEqual(['users', 'health', 'alpha', 'zeta'])
    expect(config.routes[0]!.match.path).toBe('/v2/users/*')
    expect(config.routes[2]).toMatchObject({ id: 'alpha', priority: 0, websocket: false }) // defaults applied
    expect(Object.isFrozen(config.routes)).toBe(true)
  })

  it('an etcd upstream replaces the file upstream of the same name', () => {
    const items = new EtcdItems('/tg')
    items.replaceAll([put('upstreams/users', { targets: [{ url: 'http://127.0.0.1:9100' }], balancer: 'random' })], revision)
    const { config } = items.merge(FILE)
    expect(config.upstreams['users']).toMatchObject({ balancer: 'random', targets: [{ url: 'http://127.0.0.1:9100', weight: 1 }] })
  })

  it('rejects an etcd upstream with tls: (its files are read and watched next to routes.yaml only) and keeps the file\'s', () => {
    const items = new EtcdItems('/tg')
    items.replaceAll([put('upstreams/users', { targets: [{ url: 'https://127.0.0.1:9100' }], tls: { ca: '/etc/ca.pem' } })], revision)
    const { config, newRejections } = items.merge(FILE)
    expect(newRejections.map((r) => [r.key, r.reason])).toEqual([
      ['/tg/upstreams/users', 'tls: not supported in an etcd upstream; define an upstream with tls in routes.yaml, where its files are read and watched'],
    ])
    expect(config.upstreams['users']).toEqual(FILE.upstreams['users'])
  })

  it('rejects bad JSON, a schema error, an unknown upstream and a bad path each with key, revision and reason, and applies the rest of the batch', () => {
    const items = new EtcdItems('/tg')
    const bad = [
      put('routes/json', '{"match":'),
      put('routes/schema', { match: { path: '/s' }, upstream: 'users', priority: 'high' }),
      put('routes/orphan', { match: { path: '/o' }, upstream: 'nope' }),
      put('routes/pattern', { match: { path: '/p/*/x' }, upstream: 'users' }),
      put('routes/list', '[1,2]'),
    ]
    items.replaceAll([...bad, put('routes/good', { match: { path: '/g' }, upstream: 'users' })], revision)
    const { config, newRejections } = items.merge(FILE)
    expect(routeIds(config)).toEqual(['users', 'health', 'good'])
    const byKey = Object.fromEntries(newRejections.map((r) => [r.key, r]))
    expect(Object.keys(byKey).sort()).toEqual(['/tg/routes/json', '/tg/routes/list', '/tg/routes/orphan', '/tg/routes/pattern', '/tg/routes/schema'])
    expect(byKey['/tg/routes/json']).toMatchObject({ revision: bad[0]!.modRevision, keptRevision: null })
    expect(byKey['/tg/routes/json']!.reason).toMatch(/^not valid JSON/)
    expect(byKey['/tg/routes/schema']!.reason).toBe('priority: must be an integer, got "high"')
    expect(byKey['/tg/routes/orphan']!.reason).toMatch(/^upstream: upstream "nope" is not defined; defined upstreams: users/)
    expect(byKey['/tg/routes/pattern']!.reason).toMatch(/^match\.path: "\*" must be the last segment/)
    expect(byKey['/tg/routes/list']!.reason).toBe('must be a JSON object, got a list')
    expect(items.rejections).toHaveLength(5)
  })

  it('rejects a route whose path no request can reach, with key, revision and reason, keeping its previous version', () => {
    const items = new EtcdItems('/tg')
    const v1 = put('routes/dots', { match: { path: '/b' }, upstream: 'users' })
    items.replaceAll([v1], revision)
    items.merge(FILE)
    const v2 = put('routes/dots', { match: { path: '/a/../b' }, upstream: 'users' })
    const query = put('routes/query', { match: { path: '/q?x=1' }, upstream: 'users' })
    const slash = put('routes/slash', { match: { path: '/s%2Fx' }, upstream: 'users' })
    items.apply([v2, query, slash])
    const { config, newRejections } = items.merge(FILE)
    expect(config.routes.find((r) => r.id === 'dots')?.match.path).toBe('/b')
    expect(routeIds(config)).toEqual(['users', 'health', 'dots'])
    expect(newRejections).toEqual([
      { key: '/tg/routes/dots', revision: v2.modRevision, keptRevision: v1.modRevision,
        reason: 'match.path: can never match: the segment ".." is a dot segment, and requests with one are refused with 400; write "/b"' },
      { key: '/tg/routes/query', revision: query.modRevision, keptRevision: null, reason: expect.stringMatching(/^match\.path: can never match: "\?" starts the query string/) },
      { key: '/tg/routes/slash', revision: slash.modRevision, keptRevision: null, reason: expect.stringMatching(/^match\.path: can never match: requests with %2F .* set allowEncodedSlash: true/) },
    ])
    // The route's own allowEncodedSlash makes %2F reachable.
    items.apply([put('routes/slash', { match: { path: '/s%2Fx' }, upstream: 'users', allowEncodedSlash: true })])
    expect(routeIds(items.merge(FILE).config)).toEqual(['users', 'health', 'dots', 'slash'])
  })

  it('keeps the previous good version of an item whose new version is invalid, and reports that version once', () => {
    const items = new EtcdItems('/tg')
    const v1 = put('routes/a', { match: { path: '/a1' }, upstream: 'users' })
    items.replaceAll([v1], revision)
    items.merge(FILE)
    const v2 = put('routes/a', { match: { path: '/a2' }, upstream: 'missing' })
    items.apply([v2])
    const first = items.merge(FILE)
    expect(first.config.routes.find((r) => r.id === 'a')?.match.path).toBe('/a1')
    expect(first.newRejections).toEqual([expect.objectContaining({ key: '/tg/routes/a', revision: v2.modRevision, keptRevision: v1.modRevision })])
    // Merged again (another key changed, or the file was reloaded): still rejected, not reported again.
    items.apply([put('routes/b', { match: { path: '/b' }, upstream: 'users' })])
    const second = items.merge(FILE)
    expect(second.newRejections).toEqual([])
    expect(second.config.routes.find((r) => r.id === 'a')?.match.path).toBe('/a1')
    expect(items.rejections.map((r) => r.key)).toEqual(['/tg/routes/a'])
    // Fixed: the new version applies and the rejection is gone.
    items.apply([put('routes/a', { match: { path: '/a3' }, upstream: 'users' })])
    const third = items.merge(FILE)
    expect(third.config.routes.find((r) => r.id === 'a')?.match.path).toBe('/a3')
    expect(items.rejections).toEqual([])
  })

  it('rejects a route whose id differs from its key, and a key that is not a valid route id', () => {
    const items = new EtcdItems('/tg')
    items.replaceAll([put('routes/a', { id: 'b', match: { path: '/a' }, upstream: 'users' }), put('routes/sp ace', { match: { path: '/s' }, upstream: 'users' })], revision)
    const { newRejections } = items.merge(FILE)
    expect(newRejections.map((r) => [r.key, r.reason])).toEqual([
      ['/tg/routes/a', 'id: "b" differs from the key\'s id "a"; omit id or make them equal'],
      ['/tg/routes/sp ace', expect.stringMatching(/^the key's route id "sp ace" must be/)],
    ])
  })

  it('keeps an upstream whose deletion would leave a route in force without it, until nothing uses it', () => {
    const items = new EtcdItems('/tg')
    items.replaceAll([
      put('upstreams/orders', { targets: [{ url: 'http://127.0.0.1:9002' }] }),
      put('routes/orders', { match: { path: '/orders' }, upstream: 'orders' }),
    ], revision)
    items.merge(FILE)
    const deletion = del('upstreams/orders')
    items.apply([deletion])
    const r1 = items.merge(FILE)
    expect(Object.keys(r1.config.upstreams)).toContain('orders')
    expect(routeIds(r1.config)).toContain('orders')
    expect(r1.newRejections).toEqual([expect.objectContaining({
      key: '/tg/upstreams/orders', revision: deletion.modRevision, reason: expect.stringMatching(/^still used by route "orders"/),
    })])
    items.apply([del('routes/orders')])
    const r2 = items.merge(FILE)
    expect(Object.keys(r2.config.upstreams)).toEqual(['users'])
    expect(routeIds(r2.config)).toEqual(['users', 'health'])
    expect(items.rejections).toEqual([])
  })

  it('takes a route out of service when the file removed the upstream it uses', () => {
    const items = new EtcdItems('/tg')
    items.replaceAll([put('routes/x', { match: { path: '/x' }, upstream: 'legacy' })], revision)
    const withLegacy = loadConfigText('etcd: {}\nupstreams: { legacy: { targets: [{ url: "http://127.0.0.1:9003" }] }, users: { targets: [{ url: "http://127.0.0.1:9001" }] } }\n', 'routes.yaml', {}).config
    expect(routeIds(items.merge(withLegacy).config)).toEqual(['x'])
    const r = items.merge(FILE)
    expect(routeIds(r.config)).toEqual(['users', 'health'])
    expect(r.newRejections[0]?.reason).toMatch(/upstream "legacy" is not defined.*out of service/)
  })

  it('adds registered instances to the targets of their upstream, after the static ones; an upstream may have only registered targets', () => {
    const items = new EtcdItems('/tg')
    items.replaceAll([
      put('upstreams/dyn', { balancer: 'least-request' }),
      put('services/dyn/b', { url: 'http://127.0.0.1:9102', weight: 3 }),
      put('services/dyn/a', { url: 'http://127.0.0.1:9101' }),
      put('services/users/x', { url: 'http://127.0.0.1:9109' }),
      put('services/nobody/x', { url: 'http://127.0.0.1:9110' }),
      put('services/dyn/bad', { url: 'not a url' }),
    ], revision)
    const { config, newRejections } = items.merge(FILE)
    expect(config.upstreams['dyn']!.targets).toEqual([{ url: 'http://127.0.0.1:9101', weight: 1 }, { url: 'http://127.0.0.1:9102', weight: 3 }])
    expect(config.upstreams['users']!.targets.map((t) => t.url)).toEqual(['http://127.0.0.1:9001', 'http://127.0.0.1:9109'])
    expect(newRejections.map((r) => r.key)).toEqual(['/tg/services/dyn/bad'])
    expect(items.registrations(config).map((r) => [r.upstream, r.instance, r.attached])).toEqual([
      ['dyn', 'a', true], ['dyn', 'b', true], ['nobody', 'x', false], ['users', 'x', true],
    ])
    items.apply([del('services/dyn/a')])
    expect(items.merge(FILE).config.upstreams['dyn']!.targets.map((t) => t.url)).toEqual(['http://127.0.0.1:9102'])
  })

  it('a full read removes the keys it no longer finds', () => {
    const items = new EtcdItems('/tg')
    items.replaceAll([put('routes/a', { match: { path: '/a' }, upstream: 'users' }), put('routes/b', { match: { path: '/b' }, upstream: 'users' })], revision)
    expect(routeIds(items.merge(FILE).config)).toEqual(['users', 'health', 'a', 'b'])
    items.replaceAll([put('routes/b', { match: { path: '/b2' }, upstream: 'users' })], ++revision)
    const { config } = items.merge(FILE)
    expect(routeIds(config)).toEqual(['users', 'health', 'b'])
    expect(items.keyCount).toBe(1)
    expect(items.inForce().map((e) => e.key)).toEqual(['/tg/routes/b'])
  })
})
