// The one config applier (src/lifecycle/config-applier.ts) over the real route table (table-holder.ts).
import { pino } from 'pino'
import { describe, expect, it, onTestFinished } from 'vitest'
import { loadConfigText } from '../../src/config/load.js'
import type { Config } from '../../src/config/schema.js'
import { ConfigApplier } from '../../src/lifecycle/config-applier.js'
import { TableHolder } from '../../src/lifecycle/table-holder.js'
import { Metrics } from '../../src/telemetry/metrics.js'

function config(paths: string[]): Config {
  return loadConfigText(`upstreams:
  up: { targets: [{ url: http://127.0.0.1:9 }] }
routes:
${paths.map((p, i) => `  - { id: r${i}, match: { path: ${p} }, upstream: up }`).join('\n')}
`, 'routes.yaml', {}).config
}

function setup(first: Config) {
  const metrics = new Metrics({ defaultMetrics: false })
  const lines: Array<{ level: number; msg: string }> = []
  const log = pino({ level: 'info' }, { write: (line: string) => { lines.push(JSON.parse(line) as { level: number; msg: string }) } })
  const swapped: Config[] = []
  const holder = new TableHolder(first, metrics, (next) => swapped.push(next))
  onTestFinished(() => holder.close())
  const applier = new ConfigApplier(holder, metrics, log)
  const count = async (source: string, result: string): Promise<number> =>
    (await metrics.configReloads.get()).values.find((v) => v.labels.source === source && v.labels.result === result)?.value ?? 0
  return { holder, applier, lines, swapped, count }
}

describe('ConfigApplier', () => {
  it('builds, swaps the table in, counts and logs an applied config once', async () => {
    const t = setup(config(['/a']))
    const next = config(['/a', '/b'])

    expect(t.applier.apply(next, 'etcd', '7')).toBe('applied')

    expect(t.holder.table.config).toBe(next)
    expect(t.holder.table.version).toBe(2)
    expect(t.holder.table.routes.size).toBe(2)
    expect(t.swapped).toEqual([next])
    expect(await t.count('etcd', 'applied')).toBe(1)
    expect(t.lines.filter((l) => l.msg === 'config reloaded')).toEqual([expect.objectContaining({ source: 'etcd', revision: '7', routes: 2, version: 2 })])
  })

  it('keeps the config in force and counts a rejection when the build fails', async () => {
    const first = config(['/a'])
    const t = setup(first)
    // Validation would refuse this; the applier must survive a table build that throws anyway.
    const broken = { ...first, routes: [{ ...first.routes[0]!, upstream: 'nowhere' }] } as Config

    expect(t.applier.apply(broken, 'file', 'abc')).toBe('rejected')

    expect(t.holder.table.config).toBe(first)
    expect(t.holder.table.version).toBe(1)
    expect(t.swapped).toEqual([])
    expect(await t.count('file', 'rejected')).toBe(1)
    expect(await t.count('file', 'applied')).toBe(0)
  })

  it('leaves the config in force alone: the same object, or any config once the gate closed', async () => {
    const first = config(['/a'])
    const t = setup(first)
    let open = true
    t.applier.gate(() => open)

    expect(t.applier.apply(first, 'file', 'same')).toBe('unchanged')
    open = false
    expect(t.applier.apply(config(['/b']), 'etcd', '8')).toBe('unchanged')

    expect(t.holder.table.config).toBe(first)
    expect(await t.count('file', 'applied') + await t.count('etcd', 'applied')).toBe(0)
  })

  it('counts the start-up config as applied without building again', async () => {
    const t = setup(config(['/a']))
    t.applier.started('file')
    expect(await t.count('file', 'applied')).toBe(1)
    expect(t.holder.table.version).toBe(1)
  })
})
