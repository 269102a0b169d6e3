// The latest ActiveReport of every probed target, as the serving side sees it: written by the local
// ProbeSet (single process) or by the primary's messages (cluster worker), read by the route table when it
// builds a target (its first state) and told to whoever applies reports to the table in service.
// A 'removed' report deletes the entry, so a target removed and later added again starts pending.
import type { ActiveReport } from './active.js'

export class HealthFeed {
  readonly #latest = new Map<string, ActiveReport>()
  #listener: ((report: ActiveReport) => void) | null = null

  get(upstream: string, url: string): ActiveReport | undefined {
    return this.#latest.get(`${upstream}\u0000${url}`)
  }

  put(report: ActiveReport): void {
    const key = `${report.upstream}\u0000${report.url}`
    if (report.state === 'removed') this.#latest.delete(key)
    else this.#latest.set(key, report)
    this.#listener?.(report)
  }

  /** One listener (the table holder); a later call replaces it. */
  listen(listener: (report: ActiveReport) => void): void {
    this.#listener = listener
  }
}
