// The per-request routing work, per call: Router.match at 1k and 10k routes and canonicalizeTarget.
// Run by micro-bench.ts in its own process. Every operation runs in batches of 10,000 calls, round after
// round so that a burst of load on the machine hits them all alike; a figure is the median over batches
// of the wall time (hrtime) and of this process's CPU time per call.
import { canonicalizeTarget, isPathRejection, type PathPolicy } from '../../src/http/canonical-path.js'
import type { Router } from '../../src/router/router.js'
import { MICRO_HOST, REWRITTEN_TARGET, TYPICAL_TARGET } from './micro-routes.js'
import type { NsPerCall } from './micro-report.js'

const OPS_PER_BATCH = 10_000
const POLICY: PathPolicy = { mergeSlashes: true, rejectSemicolon: true }
const NO_HEADERS = Object.freeze({})

export interface CallOptions {
  readonly rounds: number
  readonly batchesPerRound: number
  readonly warmupBatches: number
}

interface Operation {
  readonly key: string
  readonly label: string
  readonly op: (i: number) => number
  readonly wall: number[]
  readonly cpu: number[]
}

let sink = 0

function runBatches(o: Operation, batches: number): void {
  const op = o.op
  for (let b = 0; b < batches; b++) {
    const cpuStart = process.cpuUsage()
    const start = process.hrtime.bigint()
    for (let i = 0; i < OPS_PER_BATCH; i++) sink += op(i)
    o.wall.push(Number(process.hrtime.bigint() - start) / OPS_PER_BATCH)
    const used = process.cpuUsage(cpuStart)
    o.cpu.push(((used.user + used.system) * 1000) / OPS_PER_BATCH)
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

/** `paths` must hold 1024 paths (the index is masked). */
function lookup<T>(key: string, label: string, router: Router<T>, paths: readonly string[], method = 'GET'): Operation {
  return {
    key, label, wall: [], cpu: [],
    op: (i) => (router.match(method, MICRO_HOST, paths[i & 1023]!, NO_HEADERS) === null ? 0 : 1),
  }
}

function canonicalize(key: string, label: string, target: string): Operation {
  return {
    key, label, wall: [], cpu: [],
    op: () => {
      const r = canonicalizeTarget(target, 'GET', MICRO_HOST, POLICY)
      return isPathRejection(r) ? 0 : r.path.length
    },
  }
}

/** Routers built by buildRouteTable from the small and the large table, and 1024 request paths for each. */
export interface CallInputs<T> {
  readonly small: Router<T>
  readonly large: Router<T>
  readonly smallPaths: readonly string[]
  readonly largePaths: readonly string[]
  readonly smallLabel: string
  readonly largeLabel: string
}

export function measureCalls<T>(inputs: CallInputs<T>, options: CallOptions): NsPerCall[] {
  const { small, large, smallPaths, largePaths, smallLabel, largeLabel } = inputs
  // The collection route of each service: static, no parameters object to build.
  const staticPaths = largePaths.map((p) => p.replace(/\/v\d\/.*/, '/v1/items'))
  const missPaths = largePaths.map((p) => p.replace(/\/v\d\//, '/v9/'))
  const rawTargets = largePaths.map((p) => `${p}?limit=10`)
  const operations: Operation[] = [
    lookup('lookup1k', `Router.match, ${smallLabel} routes (param-heavy mix)`, small, smallPaths),
    lookup('lookup10k', `Router.match, ${largeLabel} routes (param-heavy mix)`, large, largePaths),
    lookup('lookup10kStatic', `Router.match, ${largeLabel} routes, static route`, large, staticPaths),
    lookup('lookup10kMiss', `Router.match, ${largeLabel} routes, miss (404)`, large, missPaths),
    lookup('lookup10k405', `Router.match, ${largeLabel} routes, wrong method (405)`, large, staticPaths, 'PATCH'),
    canonicalize('canonicalizeTypical', `canonicalizeTarget ${TYPICAL_TARGET}`, TYPICAL_TARGET),
    canonicalize('canonicalizeRewritten', `canonicalizeTarget ${REWRITTEN_TARGET}`, REWRITTEN_TARGET),
    {
      key: 'canonicalizePlusMatch10k', label: `canonicalizeTarget + Router.match, ${largeLabel} routes`, wall: [], cpu: [],
      op: (i) => {
        const r = canonicalizeTarget(rawTargets[i & 1023]!, 'GET', MICRO_HOST, POLICY)
        if (isPathRejection(r)) return 0
        return large.match('GET', MICRO_HOST, r.path, NO_HEADERS) === null ? 0 : 1
      },
    },
  ]
  for (const o of operations) runBatches(o, options.warmupBatches) // let the JIT settle
  for (const o of operations) o.wall.length = o.cpu.length = 0
  for (let round = 0; round < options.rounds; round++) for (const o of operations) runBatches(o, options.batchesPerRound)
  if (sink === 0) throw new Error('no call matched anything: the request paths do not fit the tables')
  return operations.map((o) => ({
    key: o.key,
    label: o.label,
    wallNs: median(o.wall),
    minWallNs: Math.min(...o.wall),
    maxWallNs: Math.max(...o.wall),
    cpuNs: median(o.cpu),
    batches: o.wall.length,
  }))
}
