// Micro-benchmark of the per-request routing work: Router.match at 1k and 10k routes, the 10k build
// time, and canonicalizeTarget. Run: npx tsc -p . && node dist/bench/micro/router-bench.js
// Prints a table and one JSON line: per call, the median over batches of wall time (hrtime) and of the
// process's CPU time, which stays meaningful when other processes compete for the cores.
import os from 'node:os'
import { canonicalizeTarget, isPathRejection, type PathPolicy } from '../../src/proxy/canonical-path.js'
import { Router, type RouteSpec } from '../../src/router/router.js'

const ROUNDS = 5           // every scenario runs once per round, so a burst of load hits them all alike
const BATCHES_PER_ROUND = 15
const OPS_PER_BATCH = 10_000
const POLICY: PathPolicy = { mergeSlashes: true, rejectSemicolon: true }
const NO_HEADERS = Object.freeze({})

interface Entry {
  readonly spec: RouteSpec
  readonly value: string
}

/** Realistic tables: per service a collection, an item, a sub-resource of the item and a versioned prefix. */
function routeTable(count: number): Entry[] {
  const entries: Entry[] = []
  const route = (id: string, path: string, methods: string[] | null): void => {
    entries.push({ spec: { id, path, methods, host: null, headers: null, priority: 0 }, value: id })
  }
  for (let svc = 0; entries.length < count; svc++) {
    route(`svc${svc}-list`, `/svc${svc}/v1/resource`, ['GET', 'POST'])
    route(`svc${svc}-item`, `/svc${svc}/v1/resource/:id`, ['GET', 'PUT', 'DELETE'])
    route(`svc${svc}-sub`, `/svc${svc}/v1/resource/:id/sub`, ['GET'])
    route(`svc${svc}-v2`, `/svc${svc}/v2/*`, null)
  }
  return entries.slice(0, count)
}

/** Request paths that hit the table: mostly param routes, as in real APIs. */
function requestPaths(count: number, services: number): string[] {
  const paths: string[] = []
  let seed = 12345
  const next = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return seed
  }
  for (let i = 0; i < 1024; i++) {
    const svc = next() % services
    const id = 10000 + (next() % 90000)
    switch (i % 4) {
      case 0: paths.push(`/svc${svc}/v1/resource/${id}/sub`); break
      case 1: paths.push(`/svc${svc}/v1/resource/${id}`); break
      case 2: paths.push(`/svc${svc}/v1/resource`); break
      default: paths.push(`/svc${svc}/v2/things/${id}`)
    }
  }
  return paths.slice(0, count)
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] as number
}

let sink = 0

/** ns per call: the median over batches of wall time, and of this process's CPU time (robust on a busy host). */
interface Timing {
  readonly wallNs: number
  readonly cpuNs: number
}

interface Scenario {
  readonly name: string
  readonly op: (i: number) => number
  readonly wall: number[]
  readonly cpu: number[]
}

const scenarios: Scenario[] = []

function scenario(name: string, op: (i: number) => number): Scenario {
  const s: Scenario = { name, op, wall: [], cpu: [] }
  scenarios.push(s)
  return s
}

function runBatches(s: Scenario, batches: number): void {
  const op = s.op
  for (let b = 0; b < batches; b++) {
    const cpuStart = process.cpuUsage()
    const start = process.hrtime.bigint()
    for (let i = 0; i < OPS_PER_BATCH; i++) sink += op(i)
    s.wall.push(Number(process.hrtime.bigint() - start) / OPS_PER_BATCH)
    const used = process.cpuUsage(cpuStart)
    s.cpu.push(((used.user + used.system) * 1000) / OPS_PER_BATCH)
  }
}

function timing(s: Scenario): Timing {
  return { wallNs: median(s.wall), cpuNs: median(s.cpu) }
}

function lookup(name: string, router: Router<string>, paths: readonly string[], method = 'GET'): Scenario {
  const mask = paths.length - 1
  return scenario(name, (i) => {
    const result = router.match(method, 'api.example.com', paths[i & mask] as string, NO_HEADERS)
    return result === null ? 0 : 1
  })
}

function buildMs(entries: readonly Entry[]): number {
  const times: number[] = []
  for (let i = 0; i < 7; i++) {
    const start = process.hrtime.bigint()
    sink += new Router(entries).size
    times.push(Number(process.hrtime.bigint() - start) / 1e6)
  }
  return median(times)
}

const table1k = routeTable(1_000)
const table10k = routeTable(10_000)
const router1k = new Router(table1k)
const router10k = new Router(table10k)
const paths1k = requestPaths(1024, 250)
const paths10k = requestPaths(1024, 2500)
const staticPaths10k = paths10k.map((p) => p.replace(/\/v1\/resource\/.*/, '/v1/resource'))
const missPaths10k = paths10k.map((p) => p.replace('/v1/', '/v9/'))

const typical = '/api/v1/users/12345/orders?limit=10'
const rewritten = '//api/v1/%75sers/12345/orders%2f?limit=10'
const rawTargets10k = paths10k.map((p) => `${p}?limit=10`)

const lookup1k = lookup('Router.match, 1k routes (param-heavy mix)', router1k, paths1k)
const lookup10k = lookup('Router.match, 10k routes (param-heavy mix)', router10k, paths10k)
const lookup10kStatic = lookup('Router.match, 10k routes, static route', router10k, staticPaths10k)
const lookup10kMiss = lookup('Router.match, 10k routes, miss (404)', router10k, missPaths10k)
const lookup10k405 = lookup('Router.match, 10k routes, wrong method (405)', router10k, staticPaths10k, 'PATCH')
const canonicalizeTypical = scenario(`canonicalizeTarget ${typical}`, () => {
  const r = canonicalizeTarget(typical, 'GET', 'api.example.com', POLICY)
  return isPathRejection(r) ? 0 : r.path.length
})
const canonicalizeRewritten = scenario(`canonicalizeTarget ${rewritten}`, () => {
  const r = canonicalizeTarget(rewritten, 'GET', 'api.example.com', POLICY)
  return isPathRejection(r) ? 0 : r.path.length
})
const canonicalizePlusMatch10k = scenario('canonicalizeTarget + Router.match, 10k routes', (i) => {
  const r = canonicalizeTarget(rawTargets10k[i & 1023] as string, 'GET', 'api.example.com', POLICY)
  if (isPathRejection(r)) return 0
  return router10k.match('GET', 'api.example.com', r.path, NO_HEADERS) === null ? 0 : 1
})

for (const s of scenarios) runBatches(s, 5) // warm-up: let the JIT settle
for (const s of scenarios) s.wall.length = s.cpu.length = 0
for (let round = 0; round < ROUNDS; round++) for (const s of scenarios) runBatches(s, BATCHES_PER_ROUND)

const results = {
  lookup1k: timing(lookup1k),
  lookup10k: timing(lookup10k),
  lookup10kStatic: timing(lookup10kStatic),
  lookup10kMiss: timing(lookup10kMiss),
  lookup10k405: timing(lookup10k405),
  build10kMs: buildMs(table10k),
  canonicalizeTypical: timing(canonicalizeTypical),
  canonicalizeRewritten: timing(canonicalizeRewritten),
  canonicalizePlusMatch10k: timing(canonicalizePlusMatch10k),
}

const timings: Array<[string, Timing]> = scenarios.map((sc) => [sc.name, timing(sc)])
const width = Math.max(...timings.map(([name]) => name.length))
console.log(`${'operation'.padEnd(width)}  ${'wall ns'.padStart(8)}  ${'cpu ns'.padStart(8)}   (medians per call)`)
for (const [name, t] of timings) console.log(`${name.padEnd(width)}  ${t.wallNs.toFixed(0).padStart(8)}  ${t.cpuNs.toFixed(0).padStart(8)}`)
console.log(`${'new Router(10k routes)'.padEnd(width)}  ${results.build10kMs.toFixed(1).padStart(8)} ms`)
const round = (t: Timing): Timing => ({ wallNs: Math.round(t.wallNs), cpuNs: Math.round(t.cpuNs) })
console.log(JSON.stringify({
  bench: 'router', node: process.version, loadAverage1m: os.loadavg()[0], cpus: os.cpus().length,
  ...Object.fromEntries(Object.entries(results).map(([k, v]) => [k, typeof v === 'number' ? Math.round(v * 10) / 10 : round(v)])),
  sink: sink > 0,
}))
