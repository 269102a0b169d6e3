// How the per-call micro-benchmarks are timed (router-bench.ts, limiter-bench.ts): every operation runs in
// batches of 10,000 calls, round after round, the operations taking turns so that a burst of load on the
// machine hits them all alike; a figure is the median over batches of the wall time (hrtime) and of this
// process's CPU time per call.
import type { NsPerCall } from './micro-report.js'

const OPS_PER_BATCH = 10_000

export interface CallOptions {
  readonly rounds: number
  readonly batchesPerRound: number
  readonly warmupBatches: number
}

export interface Operation {
  readonly key: string
  readonly label: string
  /** One call; `i` counts the calls of the batch. Returns what it found (1: a match, an admission). */
  readonly op: (i: number) => number
  /** The returns must not all be 0: a lookup that never matches measures the wrong thing. */
  readonly mustHit: boolean
  readonly wall: number[]
  readonly cpu: number[]
  hits: number
}

export function operation(key: string, label: string, op: (i: number) => number, mustHit = false): Operation {
  return { key, label, op, mustHit, wall: [], cpu: [], hits: 0 }
}

function runBatches(o: Operation, batches: number): void {
  const op = o.op
  for (let b = 0; b < batches; b++) {
    let hits = 0
    const cpuStart = process.cpuUsage()
    const start = process.hrtime.bigint()
    for (let i = 0; i < OPS_PER_BATCH; i++) hits += op(i)
    o.wall.push(Number(process.hrtime.bigint() - start) / OPS_PER_BATCH)
    const used = process.cpuUsage(cpuStart)
    o.cpu.push(((used.user + used.system) * 1000) / OPS_PER_BATCH)
    o.hits += hits // used, so the calls cannot be optimised away
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

/** Warm-up batches for each (to let the JIT settle), then the measured rounds; one summary per operation. */
export function measureOperations(operations: readonly Operation[], options: CallOptions): NsPerCall[] {
  for (const o of operations) runBatches(o, options.warmupBatches)
  for (const o of operations) {
    o.wall.length = o.cpu.length = 0
    o.hits = 0
  }
  for (let round = 0; round < options.rounds; round++) for (const o of operations) runBatches(o, options.batchesPerRound)
  for (const o of operations) if (o.mustHit && o.hits === 0) throw new Error(`${o.label}: no call found anything; the inputs do not fit`)
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
