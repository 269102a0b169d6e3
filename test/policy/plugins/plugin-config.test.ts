// The plugins: setting as the config pipeline sees it (README "Plugins"): module paths made absolute against
// the config file's directory, the time budget's default, and the refusal of plugins in etcd route values.
import { describe, expect, it } from 'vitest'
import { loadConfigText } from '../../../src/config/load.js'
import { parseItem } from '../../../src/etcd/keys.js'

const yaml = (...lines: string[]): string => `${lines.join('\n')}\n`
const UPSTREAM = 'upstreams: { u: { targets: [{ url: "http://127.0.0.1:9009" }] } }'

describe('plugins in the config', () => {
  it('resolves a relative module against the config file\'s directory, keeps an absolute one, defaults timeout to 100ms and config to {}', () => {
    const { config } = loadConfigText(yaml(UPSTREAM, 'routes:',
      '  - { id: r, match: { path: /r }, upstream: u, plugins: [{ module: ./plugins/a.js }, { module: /opt/p/b.js, config: { x: 1 }, timeout: 2s }] }',
    ), '/etc/tollgate/routes.yaml', {})
    expect(config.routes[0]!.plugins).toEqual([
      { module: '/etc/tollgate/plugins/a.js', config: {}, timeout: 100 },
      { module: '/opt/p/b.js', config: { x: 1 }, timeout: 2000 },
    ])
  })

  it('refuses a plugin entry with an unknown key or a bad timeout, at file:line:col', () => {
    expect(() => loadConfigText(yaml(UPSTREAM, 'routes:',
      '  - { id: r, match: { path: /r }, upstream: u, plugins: [{ module: ./a.js, timeout: soon, priority: 1 }] }',
    ), 'routes.yaml', {})).toThrow(/routes\.yaml:3:\d+ routes\[0\]\.plugins\[0\]\.timeout: .*\n.*routes\.yaml:3:\d+ routes\[0\]\.plugins\[0\]\.priority/)
  })

  it('refuses plugins in an etcd route value: etcd write access must not name code for the gateway to run', () => {
    const r = parseItem({ kind: 'route', id: 'r' }, JSON.stringify({ match: { path: '/r' }, upstream: 'u', plugins: [{ module: '/tmp/x.js' }] }))
    expect(r).toEqual({ reason: 'plugins: are read from routes.yaml only; move this route to the file or drop its plugins' })
  })
})
