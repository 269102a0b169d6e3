// contrib/compose (README "Docker Compose"): no container engine runs on our CI machines, so the compose
// project is checked for what can go wrong without one: every file it mounts exists, the services reference
// each other's names and the ports they really listen on, the Prometheus config passes promtool, the gateway's
// routes.yaml passes `tollgate validate`, and Grafana gets the dashboard that prometheus-dashboard.test.ts runs.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, posix, resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { describe, expect, it } from 'vitest'
import { CLI } from '../helpers/gateway.js'
import { PROMTOOL_BIN } from '../helpers/prometheus.js'

const root = resolve(import.meta.dirname, '../..')
const dir = join(root, 'contrib/compose')

interface Service {
  readonly image?: string
  readonly build?: { context: string; dockerfile?: string }
  readonly command?: string | string[]
  readonly environment?: Record<string, string>
  readonly volumes?: string[]
  readonly ports?: string[]
  readonly depends_on?: string[] | Record<string, { condition: string }>
  readonly healthcheck?: { test: string[] }
  readonly stop_grace_period?: string
}
interface Compose { readonly services: Record<string, Service>; readonly volumes?: Record<string, unknown> }

const compose = parseYaml(readFileSync(join(dir, 'compose.yaml'), 'utf8')) as Compose
const services = compose.services
const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8')

interface Mount { readonly source: string; readonly target: string; readonly isBind: boolean }
const mounts = (s: Service): Mount[] => (s.volumes ?? []).map((v) => {
  const [source, target] = v.split(':') as [string, string]
  return { source, target, isBind: source.startsWith('.') || source.startsWith('/') }
})
/** The host path of a bind mount of service `name` whose container path is `target`. */
function hostPathOf(name: string, target: string): string {
  const m = mounts(services[name]!).find((x) => x.isBind && (target === x.target || target.startsWith(x.target + '/')))
  if (m === undefined) throw new Error(`${name}: nothing mounted at ${target}`)
  return join(resolve(dir, m.source), posix.relative(m.target, target))
}
const args = (s: Service): string[] => (Array.isArray(s.command) ? s.command : (s.command ?? '').split(' '))
const flag = (s: Service, name: string): string | undefined => args(s).find((a) => a.startsWith(`--${name}=`))?.split('=').slice(1).join('=')
const portOf = (address: string): number => Number(/:(\d+)\/?$/.exec(address)?.[1])

/** The ports each service listens on inside its container: from its own flags, else the image's default. */
function listening(name: string): number[] {
  const s = services[name]!
  switch (name) {
    case 'tollgate': {
      // The image's ENV overrides the file (SPEC §1: TOLLGATE_<PATH>); both must say the same.
      const env = (key: string): number => portOf(new RegExp(`${key}=(\\S+)`).exec(dockerfile)![1]!)
      const file = parseYaml(readFileSync(hostPathOf('tollgate', '/etc/tollgate/routes.yaml'), 'utf8')) as { listen: string; admin: string }
      expect([portOf(file.listen), portOf(file.admin)]).toEqual([env('TOLLGATE_LISTEN'), env('TOLLGATE_ADMIN')])
      return [env('TOLLGATE_LISTEN'), env('TOLLGATE_ADMIN')]
    }
    case 'etcd': return [portOf(flag(s, 'listen-client-urls') ?? ':2379'), portOf(flag(s, 'listen-peer-urls') ?? ':2380')]
    case 'redis': return [6379]
    case 'prometheus': return [portOf(flag(s, 'web.listen-address') ?? ':9090')]
    case 'grafana': return [Number(s.environment?.['GF_SERVER_HTTP_PORT'] ?? 3000)]
    case 'echo': return [Number(flag(s, 'port') ?? 80)]
    default: throw new Error(`service ${name}: the test does not know which port it listens on`)
  }
}

/** `host:port` (or a URL) must name a compose service and a port it listens on. */
function expectService(reference: string, from: string): string {
  const m = /^(?:\w+:\/\/)?([\w-]+):(\d+)/.exec(reference)
  expect(m, `${from}: ${reference}`).not.toBeNull()
  const [, host, port] = m!
  expect(Object.keys(services), `${from}: ${reference} names no service`).toContain(host)
  expect(listening(host!), `${from}: ${host} does not listen on ${port}`).toContain(Number(port))
  return host!
}

describe('contrib/compose', () => {
  it('runs the gateway with etcd, Redis, Prometheus, Grafana and an example upstream, on pinned images', () => {
    expect(Object.keys(services).sort()).toEqual(['echo', 'etcd', 'grafana', 'prometheus', 'redis', 'tollgate'])
    const build = services['tollgate']!.build!
    expect(existsSync(join(resolve(dir, build.context), build.dockerfile ?? 'Dockerfile'))).toBe(true)
    expect(realpathSync(resolve(dir, build.context))).toBe(realpathSync(root))
    for (const [name, s] of Object.entries(services)) {
      expect(s.image, name).toBeDefined()
      if (s.build === undefined) expect(s.image, `${name}: pin a version`).toMatch(/:(?!latest$)[\w.-]+$/)
      const deps = Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on ?? {})
      for (const d of deps) expect(Object.keys(services), `${name} depends on ${d}`).toContain(d)
      for (const [d, c] of Object.entries(Array.isArray(s.depends_on) ? {} : s.depends_on ?? {})) {
        if (c.condition === 'service_healthy') expect(services[d]!.healthcheck, `${name} waits for ${d} to be healthy`).toBeDefined()
      }
    }
  })

  it('mounts only files and directories that exist, and declares every named volume', () => {
    const declared = Object.keys(compose.volumes ?? {})
    const used = new Set<string>()
    for (const [name, s] of Object.entries(services)) {
      for (const m of mounts(s)) {
        expect(m.target, `${name}: ${m.source}`).toMatch(/^\//)
        if (m.isBind) expect(existsSync(resolve(dir, m.source)), `${name} mounts ${m.source}, which does not exist`).toBe(true)
        else {
          expect(declared, `${name}: volume ${m.source} is not declared`).toContain(m.source)
          used.add(m.source)
        }
      }
    }
    expect([...used].sort()).toEqual([...declared].sort())
    // The gateway's config directory is mounted whole, so hot reload sees edits (README "Deployment").
    expect(statSync(hostPathOf('tollgate', '/etc/tollgate')).isDirectory()).toBe(true)
  })

  it('publishes the ports the services listen on, the admin listener, Prometheus and Grafana on loopback only', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const p of s.ports ?? []) {
        const parts = p.split(':')
        expect(listening(name), `${name} publishes ${p}`).toContain(Number(parts[parts.length - 1]))
      }
    }
    expect(services['tollgate']!.ports).toEqual(['8080:8080', '127.0.0.1:9901:9901'])
    for (const name of ['prometheus', 'grafana']) for (const p of services[name]!.ports!) expect(p).toMatch(/^127\.0\.0\.1:/)
    // Docker's SIGKILL must come after the gateway's own drain (shutdown.delay + shutdown.timeout).
    const cfg = parseYaml(readFileSync(hostPathOf('tollgate', '/etc/tollgate/routes.yaml'), 'utf8')) as { shutdown: { delay: string; timeout: string } }
    const seconds = (d: string): number => Number(/^(\d+)s$/.exec(d)![1])
    expect(seconds(services['tollgate']!.stop_grace_period!)).toBeGreaterThan(seconds(cfg.shutdown.delay) + seconds(cfg.shutdown.timeout))
  })

  it("the gateway's routes.yaml passes tollgate validate and reaches etcd, Redis and the upstream by service name", () => {
    const file = hostPathOf('tollgate', '/etc/tollgate/routes.yaml')
    const r = spawnSync(process.execPath, [CLI, 'validate', file], { encoding: 'utf8' })
    expect(r.status, r.stdout + r.stderr).toBe(0)
    const cfg = parseYaml(readFileSync(file, 'utf8')) as {
      etcd: { endpoints: string[] }; redis: { url: string }; upstreams: Record<string, { targets: Array<{ url: string }> }>
    }
    expect(cfg.etcd.endpoints.map((e) => expectService(e, 'etcd.endpoints'))).toEqual(['etcd'])
    expect(expectService(cfg.redis.url, 'redis.url')).toBe('redis')
    for (const [name, u] of Object.entries(cfg.upstreams)) for (const t of u.targets) expectService(t.url, `upstreams.${name}`)
    // etcd advertises the name the gateway uses.
    expect(flag(services['etcd']!, 'advertise-client-urls')).toBe(cfg.etcd.endpoints[0])
  })

  it('Prometheus: the config passes promtool check config and scrapes the admin listener of the gateway', () => {
    expect(PROMTOOL_BIN, "promtool missing: .ci/run extracts it from Debian's prometheus package into /opt/prom").toBeDefined()
    const file = hostPathOf('prometheus', flag(services['prometheus']!, 'config.file')!)
    const r = spawnSync(PROMTOOL_BIN!, ['check', 'config', file], { encoding: 'utf8' })
    expect(r.status, r.stdout + r.stderr).toBe(0)
    const cfg = parseYaml(readFileSync(file, 'utf8')) as {
      global: { scrape_interval: string }
      scrape_configs: Array<{ job_name: string; metrics_path?: string; static_configs: Array<{ targets: string[] }> }>
    }
    const job = cfg.scrape_configs.find((j) => j.job_name === 'tollgate')!
    expect(job.metrics_path ?? '/metrics').toBe('/metrics')
    const targets = job.static_configs.flatMap((c) => c.targets)
    expect(targets.map((t) => expectService(t, 'prometheus.yml'))).toEqual(['tollgate'])
    expect(portOf(targets[0]!)).toBe(listening('tollgate')[1]) // the admin port, not the proxy's
    // Grafana's $__rate_interval is computed from the datasource's timeInterval: the scrape interval.
    const ds = parseYaml(readFileSync(hostPathOf('grafana', '/etc/grafana/provisioning/datasources/prometheus.yaml'), 'utf8')) as
      { datasources: Array<{ url: string; jsonData: { timeInterval: string } }> }
    expect(ds.datasources[0]!.jsonData.timeInterval).toBe(cfg.global.scrape_interval)
  })

  // Fenced as ```yaml prometheus.yml: test/e2e/readme-claims.test.ts loads every plain ```yaml block as routes.yaml.
  it("README's Prometheus scrape config passes promtool check config", () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8')
    const section = readme.slice(readme.indexOf('\n### Prometheus\n'))
    const block = /```yaml prometheus\.yml\n([\s\S]*?)```/.exec(section)?.[1]
    expect(block).toContain('job_name: tollgate')
    const tmp = mkdtempSync(join(tmpdir(), 'tollgate-readme-prom-'))
    try {
      writeFileSync(join(tmp, 'prometheus.yml'), block!)
      const r = spawnSync(PROMTOOL_BIN!, ['check', 'config', join(tmp, 'prometheus.yml')], { encoding: 'utf8' })
      expect(r.status, r.stdout + r.stderr).toBe(0)
    } finally {
      rmSync(tmp, { recursive: true, force: true })
    }
  })

  it('Grafana: the datasource is the Prometheus service and the provisioned dashboard is contrib/grafana/tollgate.json', () => {
    const grafana = services['grafana']!
    const ds = parseYaml(readFileSync(hostPathOf('grafana', '/etc/grafana/provisioning/datasources/prometheus.yaml'), 'utf8')) as
      { datasources: Array<{ type: string; url: string }> }
    expect(ds.datasources.map((d) => expectService(d.url, 'Grafana datasource'))).toEqual(['prometheus'])
    const providers = parseYaml(readFileSync(hostPathOf('grafana', '/etc/grafana/provisioning/dashboards/tollgate.yaml'), 'utf8')) as
      { providers: Array<{ options: { path: string } }> }
    const dashboardPath = posix.join(providers.providers[0]!.options.path, 'tollgate.json')
    expect(realpathSync(hostPathOf('grafana', dashboardPath))).toBe(realpathSync(join(root, 'contrib/grafana/tollgate.json')))
    expect(grafana.environment?.['GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH']).toBe(dashboardPath)
    expect((JSON.parse(readFileSync(hostPathOf('grafana', dashboardPath), 'utf8')) as { uid: string }).uid).toBe('tollgate')
  })
})
