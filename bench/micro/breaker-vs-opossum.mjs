// Our circuit breaker (src/policy/breaker/breaker.ts) against opossum with lean options, per call, on the
// closed path (admit + record a success) and on the open path (a refusal). The figures and the decision are
// in the comment at the top of breaker.ts. opossum is not a dependency: run this from a directory where it
// is installed, after `npm run build` here:
//
//   mkdir -p /tmp/opossum-bench && cd /tmp/opossum-bench && npm install opossum
//   node <repo>/bench/micro/breaker-vs-opossum.mjs
//
// opossum settles every fire() through a promise, so its calls are issued in batches of 1000 and each batch
// awaited: the figure is its cost per call including that settling, which a gateway would pay per request.
import { createRequire } from 'node:module'
import { Admit, Breaker } from '../../dist/src/policy/breaker/breaker.js'

const require = createRequire(`${process.cwd()}/`)
const CircuitBreaker = require('opossum')
const { version } = require('opossum/package.json')

const CALLS = Number(process.env.CALLS ?? 2_000_000)
const RUNS = Number(process.env.RUNS ?? 5)
const BATCH = 1000
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

const settings = { windowMs: 10_000, minRequests: 20, errorRate: 50, openForMs: 5_000, halfOpenRequests: 1 }
const quiet = { onTransition() {} }

function oursClosed() {
  const b = new Breaker(settings, performance.now(), quiet)
  const t0 = performance.now()
  for (let i = 0; i < CALLS; i++) {
    const now = t0 + i * 0.0001
    const a = b.admit(now)
    if (a !== Admit.Refused) b.record(now, false, a)
  }
  return ((performance.now() - t0) * 1000) / CALLS
}

function oursOpen() {
  const b = new Breaker({ ...settings, minRequests: 1, openForMs: 1e12 }, 0, quiet)
  b.record(0, true, b.admit(0))
  let refused = 0
  const t0 = performance.now()
  for (let i = 0; i < CALLS; i++) if (b.admit(t0) === Admit.Refused) refused++
  const us = ((performance.now() - t0) * 1000) / CALLS
  if (refused !== CALLS) throw new Error('not open')
  return us
}

const lean = {
  timeout: false, enableSnapshots: false, rollingPercentilesEnabled: false, volumeThreshold: 20,
  errorThresholdPercentage: 50, resetTimeout: 5000, rollingCountTimeout: 10_000, rollingCountBuckets: 10, allowWarmUp: false,
}
const action = (x) => x

async function opossumClosed() {
  const b = new CircuitBreaker(action, lean)
  const batch = new Array(BATCH)
  const t0 = performance.now()
  for (let i = 0; i < CALLS; i += BATCH) {
    for (let j = 0; j < BATCH; j++) batch[j] = b.fire(j)
    await Promise.all(batch)
  }
  const us = ((performance.now() - t0) * 1000) / CALLS
  b.shutdown()
  return us
}

async function opossumOpen() {
  const b = new CircuitBreaker(action, { ...lean, resetTimeout: 1e9 })
  b.open()
  const batch = new Array(BATCH)
  const swallow = () => undefined
  const t0 = performance.now()
  for (let i = 0; i < CALLS; i += BATCH) {
    for (let j = 0; j < BATCH; j++) batch[j] = b.fire(j).catch(swallow)
    await Promise.all(batch)
  }
  const us = ((performance.now() - t0) * 1000) / CALLS
  b.shutdown()
  return us
}

const results = { oursClosed: [], oursOpen: [], opossumClosed: [], opossumOpen: [] }
for (let r = 0; r < RUNS + 1; r++) {
  const row = { oursClosed: oursClosed(), oursOpen: oursOpen(), opossumClosed: await opossumClosed(), opossumOpen: await opossumOpen() }
  if (r === 0) continue // warm-up
  for (const k of Object.keys(row)) results[k].push(row[k])
}
console.log(`node ${process.version}, opossum ${version}, ${CALLS} calls x ${RUNS} runs (median, µs per call)`)
console.log(`closed path (admit + record success): ours ${median(results.oursClosed).toFixed(4)}  opossum ${median(results.opossumClosed).toFixed(4)}`)
console.log(`open path (refusal):                  ours ${median(results.oursOpen).toFixed(4)}  opossum ${median(results.opossumOpen).toFixed(4)}`)
