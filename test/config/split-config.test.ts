// Config errors of weighted splits, splitRules, sticky and mirror (README "Traffic splitting", "Mirroring"):
// one line each, at file:line:col, naming the field.
import { describe, expect, it } from 'vitest'
import { loadConfigText } from '../../src/config/load.js'
import { ConfigError, formatIssue } from '../../src/errors.js'

const yaml = (...lines: string[]): string => `${lines.join('\n')}\n`

function problems(text: string): string[] {
  try {
    loadConfigText(text, 'routes.yaml', {})
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.severity}: ${formatIssue(i)}`)
    throw err
  }
  throw new Error('expected the config to be rejected')
}

const UPSTREAMS = [
  'upstreams:',                                                  // 1
  '  v1: { targets: [{ url: "http://127.0.0.1:9001" }] }',       // 2
  '  v2: { targets: [{ url: "http://127.0.0.1:9002" }] }',       // 3
  'routes:',                                                     // 4
]

describe('split and mirror config', () => {
  it('accepts a weighted split with sticky, splitRules and a mirror, with the mirror defaults', () => {
    const { config } = loadConfigText(yaml(
      ...UPSTREAMS,
      '  - id: api',
      '    match: { path: /api/* }',
      '    upstream: [{ upstream: v1, weight: 95 }, { upstream: v2, weight: 5 }]',
      '    sticky: cookie:session',
      '    splitRules: [{ match: { headers: { x-canary: "1" }, cookies: { beta: "yes" } }, upstream: v2 }]',
      '    mirror: { upstream: v2, percent: 10 }',
    ), 'routes.yaml', {})
    expect(config.routes[0]!.upstream).toEqual([{ upstream: 'v1', weight: 95 }, { upstream: 'v2', weight: 5 }])
    expect(config.routes[0]!.mirror).toEqual({ upstream: 'v2', percent: 10, maxBodySize: 65536, maxConcurrent: 100 })
  })

  it('names an undefined upstream in a split, a rule and a mirror at its place', () => {
    expect(problems(yaml(
      ...UPSTREAMS,
      '  - id: api',
      '    match: { path: /api/* }',
      '    upstream: [{ upstream: v1, weight: 95 }, { upstream: v3, weight: 5 }]',
      '    splitRules: [{ match: { headers: { x-canary: "1" } }, upstream: v4 }]',
      '    mirror: { upstream: shadow }',
    ))).toEqual([
      'error: routes.yaml:7:58 routes[0].upstream[1].upstream: upstream "v3" is not defined; defined upstreams: v1, v2',
      'error: routes.yaml:8:69 routes[0].splitRules[0].upstream: upstream "v4" is not defined; defined upstreams: v1, v2',
      'error: routes.yaml:9:25 routes[0].mirror.upstream: upstream "shadow" is not defined; defined upstreams: v1, v2',
    ])
  })

  it('refuses weights that are all 0, negative or fractional, and an upstream named twice', () => {
    const lines = problems(yaml(
      ...UPSTREAMS,
      '  - { id: a, match: { path: /a }, upstream: [{ upstream: v1, weight: 0 }, { upstream: v2, weight: 0 }] }',
      '  - { id: b, match: { path: /b }, upstream: [{ upstream: v1, weight: -1 }, { upstream: v2, weight: 2.5 }] }',
      '  - { id: c, match: { path: /c }, upstream: [{ upstream: v1, weight: 1 }, { upstream: v1, weight: 2 }] }',
    ))
    expect(lines[0]).toMatch(/^error: routes\.yaml:5:45 routes\[0\]\.upstream: every weight is 0/)
    expect(lines.some((l) => /routes\.yaml:6:\d+ routes\[1\]\.upstream\[0\]\.weight: /.test(l))).toBe(true)
    expect(lines.some((l) => /routes\.yaml:6:\d+ routes\[1\]\.upstream\[1\]\.weight: /.test(l))).toBe(true)
    expect(lines).toContain('error: routes.yaml:7:87 routes[2].upstream[1].upstream: "v1" is already upstream[0] of this split; name each upstream once and add up its weight')
    for (const l of lines) expect(l).not.toMatch(/\n|    at /)
  })

  it('refuses sticky without a split, sticky consumer without auth, an unknown sticky source and a rule that matches everything', () => {
    const lines = problems(yaml(
      ...UPSTREAMS,
      '  - { id: a, match: { path: /a }, upstream: v1, sticky: header:x-user }',
      '  - { id: b, match: { path: /b }, upstream: [{ upstream: v1, weight: 1 }], sticky: consumer }',
      '  - { id: c, match: { path: /c }, upstream: [{ upstream: v1, weight: 1 }], sticky: query:user }',
      '  - { id: d, match: { path: /d }, upstream: v1, splitRules: [{ match: {}, upstream: v2 }] }',
    ))
    expect(lines[0]).toBe('error: routes.yaml:5:57 routes[0].sticky: sticky needs a weighted split (upstream: [{ upstream, weight }, ...]); with one upstream there is no side to stick to')
    expect(lines[1]).toMatch(/^error: routes\.yaml:6:\d+ routes\[1\]\.sticky: sticky "consumer" needs the route to have auth:/)
    expect(lines[2]).toMatch(/^error: routes\.yaml:7:\d+ routes\[2\]\.sticky: /)
    expect(lines[3]).toMatch(/^error: routes\.yaml:8:\d+ routes\[3\]\.splitRules\[0\]\.match: matches every request/)
    expect(lines).toHaveLength(4)
  })

  it('refuses a mirror percent over 100', () => {
    expect(problems(yaml(...UPSTREAMS, '  - { id: a, match: { path: /a }, upstream: v1, mirror: { upstream: v2, percent: 150 } }'))[0])
      .toMatch(/^error: routes\.yaml:5:\d+ routes\[0\]\.mirror\.percent: /)
  })
})
