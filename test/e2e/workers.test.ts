// --workers N (README "Deployment", several cores): node:cluster workers share the proxy port. Both serve; a reload
// reaches every one; a crashed worker is replaced; /metrics on the primary sums the workers' counters;
// SIGTERM drains them all and the primary exits 0.
//
// Which worker served a request is read from the kernel, not from the gateway: the upstream records the
// client port of each request, and /proc tells which process owns the socket with that local port
// (Linux; the suite watches files with inotify anyway).
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { describe, expect, it, onTestFinished } from 'vitest'
import { revisionOf } from '../../src/lifecycle/file-source.js'
import { httpRequest, spawnGateway, type GatewayProcess } from '../helpers/gateway.js'
import { startUpstream, type Upstream } from '../helpers/upstream.js'

interface RecordingUpstream extends Upstream {
  /** Client port of every request, in arrival order. */
  readonly ports: number[]
}

async function startRecordingUpstream(body = 'ok'): Promise<RecordingUpstream> {
  const ports: number[] = []
  const up = await startUpstream({
    handler: (req: IncomingMessage, res: ServerResponse) => {
      ports.push(req.socket.remotePort ?? 0)
      res.end(body)
    },
  })
  return Object.assign(up, { ports })
}

/** local TCP port -> pid, for the sockets the given processes hold open now. */
function socketOwners(pids: readonly number[]): Map<number, number> {
  const pidOfInode = new Map<string, number>()
  for (const pid of pids) {
    let fds: string[]
    try {
      fds = readdirSync(`/proc/${pid}/fd`)
    } catch {
      continue // exited
    }
    for (const fd of fds) {
      let link: string
      try {
        link = readlinkSync(`/proc/${pid}/fd/${fd}`)
      } catch {
        continue
      }
      const m = /^socket:\[(\d+)\]$/.exec(link)
      if (m !== null) pidOfInode.set(m[1]!, pid)
    }
  }
  const owners = new Map<number, number>()
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string
    try {
      text = readFileSync(table, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/)
      if (cols.length < 10) continue
      const pid = pidOfInode.get(cols[9]!)
      if (pid !== undefined) owners.set(parseInt(cols[1]!.split(':')[1]!, 16), pid)
    }
  }
  return owners
}

/** Children of `pid` (the cluster workers of the primary). */
function childrenOf(pid: number): number[] {
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === pid) out.push(Number(entry))
    } catch {
      // gone meanwhile
    }
  }
  return out.sort((a, b) => a - b)
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** `count` GETs, each on a new connection (the cluster hands out connections, not requests). */
async function freshGets(url: string, count: number): Promise<Array<{ status: number; body: string }>> {
  const out: Array<{ status: number; body: string }> = []
  for (let i = 0; i < count; i++) {
    out.push(await new Promise((resolve, reject) => {
      http.get(url, { agent: false, headers: { connection: 'close' } }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => { body += d })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      }).on('error', reject)
    }))
  }
  return out
}

/** Which worker pids served the requests the upstream recorded since `from`. */
function servedBy(up: RecordingUpstream, workers: readonly number[], from = 0): Set<number | 'unknown'> {
  const owners = socketOwners(workers)
  return new Set(up.ports.slice(from).map((port) => owners.get(port) ?? 'unknown'))
}

interface WorkersStatus {
  configured: number
  ready: number
  restarts: number
  processes: Array<{ pid: number; ready: boolean; revision: string | null }>
}

async function workersStatus(proc: GatewayProcess): Promise<WorkersStatus> {
  return ((await httpRequest(proc.adminUrl + '/status')).json() as { workers: WorkersStatus }).workers
}

/** Polls /status until `done` holds (workers report asynchronously); bounded. */
async function statusUntil(proc: GatewayProcess, done: (w: WorkersStatus) => boolean, what: string, timeoutMs = 15_000): Promise<WorkersStatus> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const w = await workersStatus(proc)
    if (done(w)) return w
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms; /status workers: ${JSON.stringify(w)}\n${proc.stdout().slice(-3000)}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

function routesYaml(up: Upstream, routes: string[]): string {
  return `upstreams:
  api: { targets: [{ url: ${up.url} }] }
routes:
${routes.map((r) => `  - { id: ${r}, match: { path: /${r}/* }, upstream: api }`).join('\n')}
`
}

function fullText(proc: GatewayProcess, yaml: string): string {
  return `listen: ${proc.url.slice('http://'.length)}\nadmin: ${proc.adminUrl.slice('http://'.length)}\n${yaml}`
}

describe('--workers 2', () => {
  it('serves from both workers', async () => {
    const up = await startRecordingUpstream()
    const proc = await spawnGateway(routesYaml(up, ['a']), ['--workers', '2'])
    const workers = childrenOf(proc.pid)
    expect(workers).toHaveLength(2)
    expect((await workersStatus(proc)).processes.map((p) => p.pid).sort((a, b) => a - b)).toEqual(workers)

    const responses = await freshGets(proc.url + '/a/x', 20)

    expect(responses.every((r) => r.status === 200)).toBe(true)
    expect(servedBy(up, workers)).toEqual(new Set(workers))
  })

  it('applies a config reload in every worker, and a rejected one in none', async () => {
    const up = await startRecordingUpstream()
    const proc = await spawnGateway(routesYaml(up, ['a']), ['--workers', '2'])
    const workers = childrenOf(proc.pid)
    expect((await freshGets(proc.url + '/b/x', 2)).map((r) => r.status)).toEqual([404, 404])

    // A bad file first: the primary rejects it and no worker leaves the running revision.
    const running = (await workersStatus(proc)).processes[0]!.revision
    writeFileSync(proc.configPath, fullText(proc, routesYaml(up, ['a', 'b']).replace('upstream: api }\n', 'upstream: nowhere }\n')))
    const deadline = Date.now() + 10_000
    let rejected: unknown[] = []
    while (rejected.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50))
      rejected = ((await httpRequest(proc.adminUrl + '/status')).json() as { config: { rejected: unknown[] } }).config.rejected
    }
    expect(rejected).toHaveLength(1)
    expect((await httpRequest(proc.adminUrl + '/metrics')).body).toContain('tollgate_config_reloads_total{source="file",result="rejected"} 1\n')
    expect((await workersStatus(proc)).processes.map((p) => p.revision)).toEqual([running, running])

    const text = fullText(proc, routesYaml(up, ['a', 'b']))
    writeFileSync(proc.configPath, text)
    const revision = revisionOf(text)
    await statusUntil(proc, (w) => w.processes.length === 2 && w.processes.every((p) => p.revision === revision), 'every worker on the new revision')

    const from = up.ports.length
    const responses = await freshGets(proc.url + '/b/x', 20)
    expect(responses.map((r) => r.status)).toEqual(new Array(20).fill(200))
    expect(servedBy(up, workers, from)).toEqual(new Set(workers))
  })

  it('replaces a crashed worker and keeps serving', async () => {
    const up = await startRecordingUpstream()
    const proc = await spawnGateway(routesYaml(up, ['a']), ['--workers', '2'])
    const [victim, survivor] = childrenOf(proc.pid) as [number, number]

    process.kill(victim, 'SIGKILL')
    // Until the primary has seen the exit it may still hand a connection to the dead worker.
    await statusUntil(proc, (w) => !w.processes.some((p) => p.pid === victim), 'the primary noticed the crash')

    expect((await freshGets(proc.url + '/a/x', 10)).map((r) => r.status)).toEqual(new Array(10).fill(200))
    const status = await statusUntil(proc, (w) => w.ready === 2, 'a replacement worker is ready')
    const replacement = status.processes.map((p) => p.pid).find((pid) => pid !== survivor)!
    expect(isAlive(victim)).toBe(false)
    expect(childrenOf(proc.pid)).toEqual([survivor, replacement].sort((a, b) => a - b))
    expect(status.restarts).toBe(1)
    expect((await httpRequest(proc.adminUrl + '/readyz')).status).toBe(200)
    const from = up.ports.length
    expect((await freshGets(proc.url + '/a/x', 20)).every((r) => r.status === 200)).toBe(true)
    expect(servedBy(up, [survivor, replacement], from)).toEqual(new Set([survivor, replacement]))
  })

  it('keeps a dead worker\u2019s counters in the sum: /metrics never goes backwards when a worker dies', async () => {
    const up = await startRecordingUpstream()
    const proc = await spawnGateway(routesYaml(up, ['a']), ['--workers', '2'])
    const workers = childrenOf(proc.pid)
    expect((await freshGets(proc.url + '/a/x', 20)).every((r) => r.status === 200)).toBe(true)
    expect(servedBy(up, workers)).toEqual(new Set(workers))
    const count = async (): Promise<number> => {
      const m = /^tollgate_requests_total\{route="a",method="GET",code="200"\} (\d+)$/m.exec((await httpRequest(proc.adminUrl + '/metrics')).body)
      return m === null ? 0 : Number(m[1])
    }
    expect(await count()).toBe(20) // this scrape is what the primary remembers of each worker

    process.kill(workers[0]!, 'SIGKILL')
    await statusUntil(proc, (w) => w.ready === 2 && !w.processes.some((p) => p.pid === workers[0]), 'a replacement worker is ready')
    expect(await count()).toBe(20)
    expect((await freshGets(proc.url + '/a/x', 4)).every((r) => r.status === 200)).toBe(true)
    expect(await count()).toBe(24)
  })

  it('answers every /status and /metrics scrape while workers are killed under it, and the primary lives on', async () => {
    const up = await startRecordingUpstream()
    const proc = await spawnGateway(routesYaml(up, ['a']), ['--workers', '2'])
    // Scrapes in a tight loop, so one lands between a worker's death and the primary seeing its exit:
    // a message sent then must not take the primary down (EPIPE on the IPC channel).
    let stop = false
    const statuses: number[] = []
    const scrape = async (path: string): Promise<void> => {
      while (!stop) statuses.push((await httpRequest(proc.adminUrl + path)).status)
    }
    const scrapers = [scrape('/status'), scrape('/metrics'), scrape('/status'), scrape('/metrics')]
    try {
      for (let round = 0; round < 5; round++) {
        const before = (await workersStatus(proc)).restarts
        const victim = childrenOf(proc.pid)[0]!
        process.kill(victim, 'SIGKILL')
        await statusUntil(proc, (w) => w.restarts === before + 1 && w.ready === 2, 'a replacement worker is ready')
      }
    } finally {
      stop = true
      await Promise.allSettled(scrapers)
    }
    await Promise.all(scrapers)
    expect(proc.child.exitCode, proc.stderr()).toBe(null)
    expect(statuses.length).toBeGreaterThan(20)
    expect(statuses.filter((s) => s !== 200)).toEqual([])
  })

  it('sums the workers\u2019 counters in the primary\u2019s /metrics, each family once', async () => {
    const up = await startRecordingUpstream()
    const proc = await spawnGateway(routesYaml(up, ['a']), ['--workers', '2'])
    const workers = childrenOf(proc.pid)
    expect((await freshGets(proc.url + '/a/x', 20)).every((r) => r.status === 200)).toBe(true)
    expect(servedBy(up, workers)).toEqual(new Set(workers))

    const r = await httpRequest(proc.adminUrl + '/metrics')

    expect(r.status).toBe(200)
    const types = r.body.split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2])
    expect(types.length).toBeGreaterThan(10)
    expect(types.filter((t, i) => types.indexOf(t) !== i)).toEqual([])
    expect(r.body).toContain('tollgate_requests_total{route="a",method="GET",code="200"} 20\n')
    expect(r.body).toContain('tollgate_upstream_requests_total{upstream="api",target="127.0.0.1:' + up.port + '",code="200"} 20\n')
    expect(r.body).toContain('tollgate_config_reloads_total{source="file",result="applied"} 1\n')
    expect(r.body).toMatch(/\nnodejs_heap_size_used_bytes \d+/)
    expect(r.body).toMatch(/\ntollgate_inflight_requests 0\n/)
  })

  it('on SIGTERM drains every worker, lets the request in flight finish, and the primary exits 0', async () => {
    const up = await startRecordingUpstream()
    let arrive!: () => void
    const arrived = new Promise<void>((r) => { arrive = r })
    let release!: () => void
    const released = new Promise<void>((r) => { release = r })
    const slow = await startUpstream({
      handler: (_req, res) => {
        arrive()
        void released.then(() => res.end('slow done'))
      },
    })
    const proc = await spawnGateway(`upstreams:
  api: { targets: [{ url: ${up.url} }] }
  slow: { targets: [{ url: ${slow.url} }] }
routes:
  - { id: a, match: { path: /a/* }, upstream: api }
  - { id: slow, match: { path: /slow/* }, upstream: slow }
`, ['--workers', '2'])
    const workers = childrenOf(proc.pid)
    const inflight = new Promise<{ status: number; connection: string | undefined; body: string }>((resolve, reject) => {
      http.get(proc.url + '/slow/x', { agent: false }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => { body += d })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers['connection'], body }))
      }).on('error', reject)
    })
    await arrived

    proc.child.kill('SIGTERM')

    // Every worker stops accepting; the shared listener closes when the last one has.
    const deadline = Date.now() + 10_000
    let outcome = ''
    while (Date.now() < deadline) {
      outcome = await new Promise<string>((resolve) => {
        const s = net.connect(Number(new URL(proc.url).port), '127.0.0.1')
        s.once('connect', () => { s.destroy(); resolve('connected') })
        s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
      })
      if (outcome === 'ECONNREFUSED') break
      await new Promise((r) => setTimeout(r, 50))
    }
    expect(outcome).toBe('ECONNREFUSED')
    expect((await httpRequest(proc.adminUrl + '/readyz')).status).toBe(503)
    expect(proc.child.exitCode).toBeNull()
    release()
    expect(await inflight).toEqual({ status: 200, connection: 'close', body: 'slow done' })
    expect(await proc.exited).toEqual({ code: 0, signal: null })
    expect(workers.filter(isAlive)).toEqual([])
  })
})

/**
 * A preload (NODE_OPTIONS=--import, inherited by the workers) that records the modules each process loads:
 * ES modules through a module.register() load hook, appended to <dir>/<pid>.esm as they load, and at exit
 * the CommonJS ones (require.cache) to <dir>/<pid>.cjs. src/upstream/undici-pool.ts require()s undici's
 * Pool, and src/config/yaml-source.ts imports yaml's ES module build.
 */
function moduleProbe(): { env: Record<string, string>; modulesOf(pid: number): string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-modules-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  const hooks = join(dir, 'hooks.mjs')
  writeFileSync(hooks, `import { appendFileSync } from 'node:fs'
export async function load(url, context, next) {
  appendFileSync(${JSON.stringify(dir)} + '/' + process.pid + '.esm', url + '\\n')
  return next(url, context)
}
`)
  const probe = join(dir, 'probe.mjs')
  writeFileSync(probe, `import { createRequire, register } from 'node:module'
import { writeFileSync } from 'node:fs'
register(${JSON.stringify(pathToFileURL(hooks).href)})
const require = createRequire(import.meta.url)
process.on('exit', () => writeFileSync(${JSON.stringify(dir)} + '/' + process.pid + '.cjs', Object.keys(require.cache).join('\\n')))
`)
  return {
    env: { NODE_OPTIONS: `--import=${pathToFileURL(probe).href}` },
    modulesOf: (pid) => ['esm', 'cjs'].flatMap((ext) => readFileSync(join(dir, `${pid}.${ext}`), 'utf8').split('\n')),
  }
}

describe('--workers 2: the primary validates, the workers only apply', () => {
  it('workers serve the config the primary loaded, at start and after a reload, without parsing the file again', async () => {
    // The primary forks its workers with TOLLGATE_WORKER=1 in their environment and has none itself: a file
    // that uses it resolves to one config in the primary and another in a worker, so a worker that parsed
    // the YAML itself would serve /1/* instead of the primary's route.
    expect(process.env['TOLLGATE_WORKER']).toBeUndefined()
    const up = await startRecordingUpstream()
    const perProcess = (name: string): string => `upstreams:
  api: { targets: [{ url: ${up.url} }] }
routes:
  - { id: r, match: { path: "/\${TOLLGATE_WORKER:-${name}}/*" }, upstream: api }
`
    const proc = await spawnGateway(perProcess('primary'), ['--workers', '2'])
    const workers = childrenOf(proc.pid)
    for (const pid of workers) expect(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')).toContain('TOLLGATE_WORKER=1')

    expect((await freshGets(proc.url + '/primary/x', 20)).map((r) => r.status)).toEqual(new Array(20).fill(200))
    expect(servedBy(up, workers)).toEqual(new Set(workers))
    expect((await freshGets(proc.url + '/1/x', 4)).map((r) => r.status)).toEqual([404, 404, 404, 404])

    const text = fullText(proc, perProcess('reloaded'))
    writeFileSync(proc.configPath, text)
    await statusUntil(proc, (w) => w.processes.length === 2 && w.processes.every((p) => p.revision === revisionOf(text)), 'every worker on the new revision')
    const from = up.ports.length
    expect((await freshGets(proc.url + '/reloaded/x', 20)).map((r) => r.status)).toEqual(new Array(20).fill(200))
    expect(servedBy(up, workers, from)).toEqual(new Set(workers))
  })

  it('the primary loads no undici (so holds no pool) and the workers no YAML parser; /status still lists every target', async () => {
    const probe = moduleProbe()
    const up = await startRecordingUpstream()
    const proc = await spawnGateway(routesYaml(up, ['a']), ['--workers', '2'], probe.env)
    const workers = childrenOf(proc.pid)
    expect((await freshGets(proc.url + '/a/x', 10)).every((r) => r.status === 200)).toBe(true)
    const status = (await httpRequest(proc.adminUrl + '/status')).json() as {
      upstreams: Array<{ name: string; targets: Array<{ url: string; weight: number; healthy: boolean | null; inflight: number | null }> }>
    }

    expect(await proc.stop()).toEqual({ code: 0, signal: null })

    const undici = (pid: number): boolean => probe.modulesOf(pid).some((m) => m.includes('/node_modules/undici/'))
    expect(workers.map(undici)).toEqual([true, true]) // the probe sees undici where it is loaded
    expect(undici(proc.pid)).toBe(false)
    const yaml = (pid: number): boolean => probe.modulesOf(pid).some((m) => m.includes('/node_modules/yaml/'))
    expect(yaml(proc.pid)).toBe(true) // the primary parses routes.yaml
    expect(workers.map(yaml)).toEqual([false, false])
    // Rendered from the config: what only a live pool knows (health, requests in flight) is null there.
    expect(status.upstreams).toEqual([expect.objectContaining({
      name: 'api', targets: [expect.objectContaining({ url: up.url, weight: 1, healthy: null, inflight: null })],
    })])
  })
})
