// The active checkers of a whole config: one ActiveChecker per upstream with `healthCheck.active`, kept
// across reloads while that upstream's active settings are unchanged (its targets' probe state and timer
// carry over; added targets are probed at once, removed ones stop). A changed setting builds a new
// checker that takes over the state of the targets it shares with the old one.
//
// Who owns it (README "Health checks"): the single process, and with --workers N the cluster primary,
// which probes once per instance and sends every ActiveReport to its workers (src/lifecycle/cluster/).
// Workers own none. It works from the Config alone: no route table, no traffic pool.
import type { Config } from '../../config/schema.js'
import { Target } from '../target.js'
import { tlsConnectOptions } from '../tls-connect.js'
import { ActiveChecker, type ActiveReport, type ActiveState, type ReportListener } from './active.js'

export class ProbeSet {
  readonly #listener: ReportListener
  readonly #checkers = new Map<string, { readonly key: string; readonly checker: ActiveChecker }>()
  #closed = false

  constructor(listener: ReportListener) {
    this.#listener = listener
  }

  /** Probes what `upstreams` asks for from now on. */
  update(upstreams: Config['upstreams']): void {
    if (this.#closed) return
    for (const [name, spec] of Object.entries(upstreams)) {
      const active = spec.healthCheck?.active
      const current = this.#checkers.get(name)
      if (active === undefined) {
        if (current !== undefined) this.#remove(name, current.checker)
        continue
      }
      // New TLS material (a renewed CA or client certificate) builds a new checker: its probe connections use it.
      const key = JSON.stringify([active, spec.tls ?? null])
      // Targets normalise their URL the way the route table's do, so reports match its targets by url.
      const targets = new Map<string, Target>()
      for (const t of spec.targets) {
        const target = new Target(t.url, t.weight)
        if (!targets.has(target.url)) targets.set(target.url, target)
      }
      if (current !== undefined && current.key === key) {
        current.checker.setTargets([...targets.values()])
        continue
      }
      const checker = new ActiveChecker(name, active, this.#listener, Math.random, tlsConnectOptions(spec.tls))
      checker.setTargets([...targets.values()], current?.checker ?? null)
      if (current !== undefined) {
        // URLs the new checker does not probe are reported removed; the rest were taken over.
        for (const r of current.checker.reports()) if (!targets.has(r.url)) this.#listener({ ...r, state: 'removed' }, r.state as ActiveState)
        void current.checker.close()
      }
      this.#checkers.set(name, { key, checker })
    }
    for (const [name, { checker }] of this.#checkers) if (!Object.hasOwn(upstreams, name)) this.#remove(name, checker)
  }

  /** The state of every probed target now (what a new cluster worker is sent first). */
  reports(): ActiveReport[] {
    return [...this.#checkers.values()].flatMap(({ checker }) => checker.reports())
  }

  /** The checker of an upstream (tests: probes in flight). */
  checkerOf(upstream: string): ActiveChecker | null {
    return this.#checkers.get(upstream)?.checker ?? null
  }

  async close(): Promise<void> {
    this.#closed = true
    const closing = [...this.#checkers.values()].map(({ checker }) => checker.close())
    this.#checkers.clear()
    await Promise.all(closing)
  }

  #remove(name: string, checker: ActiveChecker): void {
    for (const r of checker.reports()) this.#listener({ ...r, state: 'removed' }, r.state as ActiveState)
    void checker.close()
    this.#checkers.delete(name)
  }
}
