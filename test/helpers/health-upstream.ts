// An upstream for health-check tests: GET /healthz answers as `probe` says (a status, or 'hang' to never
// answer), every other request as `status` says; probes and traffic are counted apart, with the most
// probes ever in flight at once. Events can be awaited: the n-th probe, the n-th request.
import type { ServerResponse } from 'node:http'
import { startUpstream, type Upstream } from './upstream.js'

export interface HealthUpstream extends Upstream {
  /** How /healthz answers from now on: a status, or 'hang' (held until the probe gives up). */
  probe: number | 'hang'
  /** How every other path answers from now on. */
  status: number
  readonly probes: number
  readonly traffic: number
  /** The most probes in flight at once so far. */
  readonly maxConcurrentProbes: number
  /** Resolves when `n` probes have arrived in all (bounded by `timeoutMs`). */
  probed(n: number, timeoutMs?: number): Promise<void>
}

export async function startHealthUpstream(name: string, options: { probe?: number | 'hang'; status?: number; suite?: boolean } = {}): Promise<HealthUpstream> {
  let probes = 0
  let traffic = 0
  let inFlight = 0
  let maxInFlight = 0
  const waiters: Array<{ n: number; resolve: () => void }> = []
  const hung: ServerResponse[] = []
  const state = { probe: options.probe ?? 200, status: options.status ?? 200 }
  const up = await startUpstream({
    suite: options.suite,
    handler: (req, res) => {
      if (req.url !== '/healthz') {
        traffic++
        res.writeHead(state.status, { 'content-type': 'text/plain' })
        return void res.end(name)
      }
      probes++
      inFlight++
      maxInFlight = Math.max(maxInFlight, inFlight)
      res.on('close', () => { inFlight-- })
      for (const w of waiters.filter((w) => probes >= w.n)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve()
      }
      if (state.probe === 'hang') return void hung.push(res)
      res.writeHead(state.probe)
      res.end()
    },
  })
  // Accessors are copied as accessors (Object.assign would copy their values once).
  return Object.defineProperties(up, Object.getOwnPropertyDescriptors({
    get probe() { return state.probe },
    set probe(v: number | 'hang') { state.probe = v },
    get status() { return state.status },
    set status(v: number) { state.status = v },
    get probes() { return probes },
    get traffic() { return traffic },
    get maxConcurrentProbes() { return maxInFlight },
    probed(n: number, timeoutMs = 5000): Promise<void> {
      if (probes >= n) return Promise.resolve()
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name}: ${probes} probes, expected ${n} within ${timeoutMs} ms`)), timeoutMs)
        waiters.push({ n, resolve: () => { clearTimeout(timer); resolve() } })
      })
    },
  })) as HealthUpstream
}

/** Polls `check` every 10 ms until it returns true, or fails after `timeoutMs` saying `what`. */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}
