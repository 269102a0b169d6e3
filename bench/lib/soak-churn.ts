// The soak's changes under load: the gateway's routes.yaml and its etcd items rewritten in turn, and
// instances registered under etcd leases that come and go. Each change is one the scenarios tolerate:
// toggled routes may answer 200 or 404, a registered instance answers like the file's target.
import { renameSync, writeFileSync } from 'node:fs'
import type { Etcd3, Lease } from 'etcd3'
import type { SoakServer } from './soak-upstreams.js'

export interface SoakTopology {
  readonly listen: string
  readonly admin: string
  readonly etcdEndpoint: string
  readonly etcdPrefix: string
  readonly snapshotFile: string
  readonly steadyA: SoakServer
  readonly steadyB: SoakServer
  readonly flaky: SoakServer
  readonly broken: SoakServer
  readonly instances: readonly SoakServer[]
}

/** routes.yaml of the soak; `hasExtraRoute` toggles /file-extra, the route the file reloads add and remove. */
export function soakConfig(t: SoakTopology, hasExtraRoute: boolean, generation: number): string {
  return `# npm run soak: generation ${generation}
listen: ${t.listen}
admin: ${t.admin}
limits: { headersTimeout: 10s, requestTimeout: 30s, keepAliveTimeout: 5s }
# Access lines off: ~250 requests/s would write ~100 MB per 10 minutes; reloads, ejections and errors still log.
log: { level: info, access: false }
etcd: { endpoints: ["${t.etcdEndpoint}"], prefix: "${t.etcdPrefix}", snapshotFile: "${t.snapshotFile}" }
upstreams:
  steady:
    targets: [{ url: ${t.steadyA.url} }, { url: ${t.steadyB.url} }]
    healthCheck: { active: { path: /healthz, interval: 2s, timeout: 1s } }
  flaky:
    targets: [{ url: ${t.steadyA.url} }, { url: ${t.flaky.url} }]
    healthCheck: { passive: { consecutiveFailures: 3, ejectionTime: 2s, maxEjectionTime: 8s, maxEjectionPercent: 50 } }
  broken:
    targets: [{ url: ${t.broken.url} }]
  reg:
    targets: [{ url: ${t.steadyB.url} }]
    retry: { attempts: 2, on: [connect-failure, reset, 502, 503, 504] }
routes:
  - { id: ok, match: { path: /ok/* }, upstream: steady }
  - id: limited
    match: { path: /limited }
    upstream: steady
    rateLimit: [{ algorithm: token-bucket, rate: 5, period: 1s, burst: 5, key: client-ip }]
  - { id: flaky, match: { path: /flaky/* }, upstream: flaky }
  - id: breaker
    match: { path: /breaker/* }
    upstream: broken
    circuitBreaker: { window: 5s, minRequests: 10, errorRate: 50, openFor: 2s, halfOpenRequests: 1 }
  - { id: reg, match: { path: /reg/* }, upstream: reg }
${hasExtraRoute ? '  - { id: file-extra, match: { path: /file-extra }, upstream: steady }\n' : ''}`
}

const json = (value: unknown): string => JSON.stringify(value)

/** The etcd items present from the start. */
export async function seedEtcd(client: Etcd3, prefix: string): Promise<void> {
  await client.put(`${prefix}/routes/etcd-stable`).value(json({ match: { path: '/etcd-stable' }, upstream: 'steady' }))
}

export interface ChurnCounts {
  fileWrites: number
  etcdChanges: number
  registrations: number
  revocations: number
  expiries: number
}

/**
 * Config changes, alternately the file and etcd, one every `everyMs`: the file gains or loses /file-extra
 * (written in place, or replaced by a rename as editors and ConfigMaps do); etcd gains or loses
 * routes/etcd-extra, or gets an invalid item (an unknown upstream) that must be rejected, then deleted.
 * Registrations: every 2 s one of the instances registers under a 3-s lease, or leaves (its lease revoked,
 * or no longer kept alive so that it expires).
 */
export class Churn {
  readonly #t: SoakTopology
  readonly #client: Etcd3
  readonly #configPath: string
  readonly #everyMs: number
  readonly #leases: (Lease | null)[]
  readonly counts: ChurnCounts = { fileWrites: 0, etcdChanges: 0, registrations: 0, revocations: 0, expiries: 0 }
  readonly errors: string[] = []
  #reloadTimer: NodeJS.Timeout | null = null
  #registerTimer: NodeJS.Timeout | null = null
  #step = 0
  #registerStep = 0
  #busy: Promise<void> = Promise.resolve()

  constructor(t: SoakTopology, client: Etcd3, configPath: string, everyMs: number) {
    this.#t = t
    this.#client = client
    this.#configPath = configPath
    this.#everyMs = everyMs
    this.#leases = t.instances.map(() => null)
  }

  start(): void {
    this.#reloadTimer = setInterval(() => this.#serially(() => this.#reload()), this.#everyMs)
    this.#registerTimer = setInterval(() => this.#serially(() => this.#register()), 2_000)
  }

  /** Stops changing things and revokes the leases still held. */
  async stop(): Promise<void> {
    if (this.#reloadTimer !== null) clearInterval(this.#reloadTimer)
    if (this.#registerTimer !== null) clearInterval(this.#registerTimer)
    await this.#busy
    for (const lease of this.#leases) await lease?.revoke().catch(() => undefined)
  }

  /** One change at a time: a slow etcd call delays the next change instead of overlapping it. */
  #serially(change: () => Promise<void>): void {
    this.#busy = this.#busy.then(change).catch((error: unknown) => {
      if (this.errors.length < 10) this.errors.push(error instanceof Error ? error.message : String(error))
    })
  }

  async #reload(): Promise<void> {
    const step = this.#step++
    if (step % 2 === 0) {
      const fileStep = step / 2
      const text = soakConfig(this.#t, fileStep % 2 === 0, fileStep)
      if (fileStep % 4 < 2) writeFileSync(this.#configPath, text)
      else {
        writeFileSync(`${this.#configPath}.tmp`, text)
        renameSync(`${this.#configPath}.tmp`, this.#configPath)
      }
      this.counts.fileWrites++
      return
    }
    const prefix = this.#t.etcdPrefix
    switch (((step - 1) / 2) % 4) {
      case 0: await this.#client.put(`${prefix}/routes/etcd-extra`).value(json({ match: { path: '/etcd-extra' }, upstream: 'steady' })); break
      case 1: await this.#client.delete().key(`${prefix}/routes/etcd-extra`); break
      case 2: await this.#client.put(`${prefix}/routes/etcd-bad`).value(json({ match: { path: '/etcd-bad' }, upstream: 'no-such-upstream' })); break
      default: await this.#client.delete().key(`${prefix}/routes/etcd-bad`)
    }
    this.counts.etcdChanges++
  }

  async #register(): Promise<void> {
    const step = this.#registerStep++
    const slot = step % this.#leases.length
    const held = this.#leases[slot]
    if (held === null || held === undefined) {
      const lease = this.#client.lease(3)
      lease.on('lost', () => { /* a lost lease is a registration that ended; the next round registers again */ })
      const instance = this.#t.instances[slot]!
      await lease.put(`${this.#t.etcdPrefix}/services/reg/${instance.name}`).value(json({ url: instance.url, weight: 1 }))
      this.#leases[slot] = lease
      this.counts.registrations++
      return
    }
    this.#leases[slot] = null
    // Every other departure is a crash: no revoke, the lease just stops being kept alive and expires.
    if (Math.floor(step / this.#leases.length) % 4 === 1) {
      held.release()
      this.counts.expiries++
    } else {
      await held.revoke()
      this.counts.revocations++
    }
  }
}
