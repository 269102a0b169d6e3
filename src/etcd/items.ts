// The etcd half of the config (README.md "Running several instances against etcd"): the latest value of
// every key under the prefix, the version of each item in force, and the merge with routes.yaml. No I/O
// here, so the rules can be tested on their own.
//
// Rules:
// - `routes/<id>`, `upstreams/<name>`: one JSON object each, validated on its own with the schema of one
//   routes.yaml entry. `services/<upstream>/<instance>`: `{"url","weight"}`, a registered target.
// - An etcd route or upstream replaces the file's item with the same id/name. Etcd routes that replace a
//   file route take its place in the order; the others follow the file's routes, in key order (the last
//   tie-break of README.md "Matching": the earlier route in the file). Registered targets follow the
//   upstream's static targets.
// - A version that fails (bad JSON, schema, cross-check such as an unknown upstream) is rejected: the
//   version in force before, if any, stays. Every other item still applies (apache/apisix#11267).
// - Deleting an upstream that an item in force still uses is rejected the same way (the upstream stays)
//   rather than taking the route down with it; it goes once nothing uses it.
import type { ConfigIssue } from '../errors.js'
import { checkConfig } from '../config/check.js'
import { upstreamReferences } from '../config/route-upstreams.js'
import { etcdWhere, itemKey, parseItem, parseItemKey, type ParsedItem } from './keys.js'
import type { Config, Route, Target, Upstream } from '../config/schema.js'
import { formatPath, type PathSegment } from '../config/validate-value.js'
import { deepFreeze } from '../lib/plain-data.js'

/** One key as read from etcd; `value` null for a deleted key (a tombstone until the next merge). */
export interface EtcdEntry {
  readonly key: string
  readonly value: string | null
  readonly modRevision: number
}

export interface EtcdRejection {
  readonly key: string
  /** mod revision of the rejected version (of the delete, for a rejected deletion). */
  readonly revision: number
  readonly reason: string
  /** What is in force instead: the revision of the previous good version, or null (nothing). */
  readonly keptRevision: number | null
}

/** A registered instance in force. */
export interface Registration {
  readonly key: string
  readonly upstream: string
  readonly instance: string
  readonly url: string
  readonly weight: number
  /** false when no upstream of that name exists: the registration waits for one. */
  readonly attached: boolean
}

export interface MergeResult {
  readonly config: Config
  /** Rejections first seen in this merge (log and count these). */
  readonly newRejections: readonly EtcdRejection[]
  /** Cross-check warnings about etcd items (e.g. a route another one shadows). */
  readonly warnings: readonly ConfigIssue[]
}

interface InForce {
  readonly parsed: ParsedItem
  readonly value: string
  readonly modRevision: number
}

/**
 * The state of one prefix. Feed it with replaceAll (a full read) and apply (watch events), then merge()
 * with the file's config to get the config in force.
 */
export class EtcdItems {
  readonly prefix: string
  /** Revision of etcd this state reflects (of the last full read or event applied). */
  revision = 0
  readonly #latest = new Map<string, EtcdEntry>()
  #inForce = new Map<string, InForce>()
  #rejections = new Map<string, EtcdRejection>()
  /** `key@revision` of rejections already reported, so a version is logged and counted once. */
  readonly #reported = new Set<string>()

  constructor(prefix: string) {
    this.prefix = prefix
  }

  /** Keys that exist under the prefix now (any folder), as the watchdog compares with etcd's count. */
  get keyCount(): number {
    let n = 0
    for (const e of this.#latest.values()) if (e.value !== null) n++
    return n
  }

  /** A full read at `revision`: keys not in it are gone. */
  replaceAll(entries: Iterable<EtcdEntry>, revision: number): void {
    const seen = new Set<string>()
    for (const e of entries) {
      seen.add(e.key)
      const old = this.#latest.get(e.key)
      if (old === undefined || old.modRevision !== e.modRevision || old.value !== e.value) this.#latest.set(e.key, e)
    }
    for (const [key, e] of this.#latest) {
      if (!seen.has(key) && e.value !== null) this.#latest.set(key, { key, value: null, modRevision: revision })
    }
    this.revision = revision
  }

  /** Watch events, in revision order. */
  apply(events: Iterable<EtcdEntry>): void {
    for (const e of events) {
      this.#latest.set(e.key, e)
      if (e.modRevision > this.revision) this.revision = e.modRevision
    }
  }

  /** Items of a snapshot: taken as the latest values and, where valid, as in force. */
  loadSnapshot(entries: Iterable<EtcdEntry>, revision: number): void {
    for (const e of entries) {
      if (e.value === null) continue
      this.#latest.set(e.key, e)
      const item = parseItemKey(this.prefix, e.key)
      if (item === null) continue
      const r = parseItem(item, e.value)
      if ('parsed' in r) this.#inForce.set(e.key, { parsed: r.parsed, value: e.value, modRevision: e.modRevision })
    }
    this.revision = revision
  }

  /**
   * Drops everything, in force included: the state came from another etcd (replaced, wiped or restored),
   * so none of it is a "last good version" of what this etcd holds. The next replaceAll starts afresh.
   */
  forget(): void {
    this.#latest.clear()
    this.#inForce = new Map()
    this.#rejections = new Map()
    this.#reported.clear()
    this.revision = 0
  }

  /** The items in force with their raw values (what the snapshot file keeps). */
  inForce(): EtcdEntry[] {
    return [...this.#inForce.entries()].sort(byKey).map(([key, f]) => ({ key, value: f.value, modRevision: f.modRevision }))
  }

  /** Versions not in force now, with the reason. */
  get rejections(): EtcdRejection[] {
    return [...this.#rejections.values()].sort((a, b) => a.key.localeCompare(b.key))
  }

  registrations(config: Config): Registration[] {
    const out: Registration[] = []
    for (const [key, f] of [...this.#inForce.entries()].sort(byKey)) {
      if (f.parsed.kind !== 'service') continue
      const { upstream, instance, target } = f.parsed
      out.push({ key, upstream, instance, url: target.url, weight: target.weight, attached: Object.hasOwn(config.upstreams, upstream) })
    }
    return out
  }

  /** The config in force: the file's, with the etcd items merged in. Updates what is in force. */
  merge(file: Config): MergeResult {
    const candidates = new Map<string, ParsedItem | null>()
    const rejections = new Map<string, EtcdRejection>()
    const reject = (key: string, reason: string): void => {
      const latest = this.#latest.get(key)
      const kept = this.#inForce.get(key)
      const keptValue = candidates.get(key)
      rejections.set(key, {
        key,
        revision: latest?.modRevision ?? this.revision,
        reason,
        keptRevision: kept !== undefined && keptValue === kept.parsed ? kept.modRevision : null,
      })
    }
    for (const [key, latest] of this.#latest) {
      const item = parseItemKey(this.prefix, key)
      if (item === null) continue
      if (latest.value === null) {
        candidates.set(key, null)
        continue
      }
      const now = this.#inForce.get(key)
      if (now !== undefined && now.value === latest.value) {
        candidates.set(key, now.parsed)
        continue
      }
      const r = parseItem(item, latest.value)
      if ('parsed' in r) candidates.set(key, r.parsed)
      else {
        candidates.set(key, now?.parsed ?? null)
        reject(key, r.reason)
      }
    }

    // Cross-checks on the merged whole. Each round reverts the items the errors point at; an item can
    // only go from its new version to its old one, then to nothing, so this ends.
    let built = buildMerged(file, candidates, this.#latest)
    let warnings: ConfigIssue[] = []
    for (let round = 0; round <= 2 * candidates.size + 1; round++) {
      const issues = checkConfig(built.config, built.locate)
      warnings = issues.filter((i) => i.severity === 'warning' && built.keyOf.has(i.where))
      const errors = issues.filter((i) => i.severity === 'error')
      if (errors.length === 0) break
      const touched = new Set<string>()
      for (const issue of errors) {
        const key = built.keyOf.get(issue.where)
        if (key === undefined || touched.has(key)) continue // the file is valid on its own: not ours to fix
        touched.add(key)
        const candidate = candidates.get(key) ?? null
        const previous = this.#inForce.get(key)?.parsed ?? null
        const reason = relativeReason(issue, built.itemPath.get(key) ?? '')
        if (candidate !== previous) {
          candidates.set(key, previous)
          reject(key, reason)
          continue
        }
        // This version was in force already: a change elsewhere broke it. An upstream it uses went away:
        // keep that upstream instead.
        const gone = missingUpstreams(candidate, built.config).map((name) => itemKey(this.prefix, { kind: 'upstream', name }))
        const restorable = gone.find((k) => this.#inForce.has(k) && candidates.get(k) !== this.#inForce.get(k)?.parsed)
        if (restorable !== undefined) {
          const kept = this.#inForce.get(restorable)!
          touched.add(restorable)
          candidates.set(restorable, kept.parsed)
          reject(restorable, `still used by ${describeItem(candidate)}; keeping version rev ${kept.modRevision} until nothing uses it`)
          continue
        }
        candidates.set(key, null)
        reject(key, `${reason}; the item is out of service until this is fixed`)
      }
      if (touched.size === 0) break
      built = buildMerged(file, candidates, this.#latest)
    }

    // Commit: what is in force now, tombstones of keys no longer in force dropped.
    const inForce = new Map<string, InForce>()
    for (const [key, parsed] of candidates) {
      if (parsed === null) continue
      const previous = this.#inForce.get(key)
      if (previous !== undefined && previous.parsed === parsed) inForce.set(key, previous)
      else {
        const latest = this.#latest.get(key)!
        inForce.set(key, { parsed, value: latest.value!, modRevision: latest.modRevision })
      }
    }
    this.#inForce = inForce
    for (const [key, e] of this.#latest) if (e.value === null && !rejections.has(key)) this.#latest.delete(key)
    const newRejections: EtcdRejection[] = []
    for (const r of rejections.values()) {
      const id = `${r.key}@${r.revision}`
      if (!this.#reported.has(id)) {
        this.#reported.add(id)
        newRejections.push(r)
      }
    }
    // Forget reported versions that are no longer rejected, so the same version rejected again later
    // (e.g. its upstream went away again) is reported again.
    for (const id of this.#reported) {
      const at = id.lastIndexOf('@')
      const r = rejections.get(id.slice(0, at))
      if (r === undefined || String(r.revision) !== id.slice(at + 1)) this.#reported.delete(id)
    }
    this.#rejections = rejections
    return { config: built.config, newRejections, warnings }
  }
}

function byKey(a: [string, unknown], b: [string, unknown]): number {
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0
}

function describeItem(p: ParsedItem | null): string {
  if (p === null) return 'an item'
  switch (p.kind) {
    case 'route': return `route "${p.id}"`
    case 'upstream': return `upstream "${p.name}"`
    case 'service': return `registration ${p.upstream}/${p.instance}`
  }
}

function missingUpstreams(p: ParsedItem | null, config: Config): string[] {
  if (p === null || p.kind !== 'route') return []
  const names = upstreamReferences(p.route).map((r) => r.name)
  return [...new Set(names)].filter((n) => !Object.hasOwn(config.upstreams, n))
}

/** `routes[7].match.path: ...` -> `match.path: ...` for the item at `routes[7]`. */
function relativeReason(issue: ConfigIssue, itemPath: string): string {
  let path = issue.path
  if (path.startsWith(itemPath)) path = path.slice(itemPath.length).replace(/^\./, '')
  return path === '' ? issue.message : `${path}: ${issue.message}`
}

interface Built {
  readonly config: Config
  /** `where` of an etcd item (as checkConfig reports it) -> its key. */
  readonly keyOf: ReadonlyMap<string, string>
  /** key -> its path in the merged config (`routes[7]`, `upstreams.users`). */
  readonly itemPath: ReadonlyMap<string, string>
  readonly locate: (path: readonly PathSegment[]) => string
}

function buildMerged(file: Config, candidates: ReadonlyMap<string, ParsedItem | null>, latest: ReadonlyMap<string, EtcdEntry>): Built {
  const upstreams: Record<string, Upstream> = { ...file.upstreams }
  const upstreamKeys = new Map<string, string>()
  const etcdRoutes = new Map<string, { key: string; route: Route }>()
  const services: Array<{ key: string; upstream: string; target: Target }> = []
  for (const [key, p] of [...candidates.entries()].sort(byKey)) {
    if (p === null) continue
    if (p.kind === 'upstream') {
      upstreams[p.name] = p.upstream
      upstreamKeys.set(p.name, key)
    } else if (p.kind === 'route') etcdRoutes.set(p.id, { key, route: p.route })
    else services.push({ key, upstream: p.upstream, target: p.target })
  }
  const registered = new Map<string, Target[]>()
  for (const s of services) {
    if (!Object.hasOwn(upstreams, s.upstream)) continue
    let list = registered.get(s.upstream)
    if (list === undefined) registered.set(s.upstream, list = [])
    list.push({ url: s.target.url, weight: s.target.weight })
  }
  for (const [name, targets] of registered) {
    const u = upstreams[name]!
    upstreams[name] = { ...u, targets: [...u.targets, ...targets] } // frozen with the whole config below
  }
  const routeKeys: Array<string | null> = []
  const routes: Route[] = []
  const placed = new Set<string>()
  for (const route of file.routes) {
    const replacement = etcdRoutes.get(route.id)
    routes.push(replacement?.route ?? route)
    routeKeys.push(replacement?.key ?? null)
    if (replacement !== undefined) placed.add(route.id)
  }
  for (const [id, { key, route }] of etcdRoutes) {
    if (placed.has(id)) continue
    routes.push(route)
    routeKeys.push(key)
  }
  const config = deepFreeze({ ...file, upstreams, routes }) as Config

  const whereOf = (key: string): string => etcdWhere(key, latest.get(key)?.modRevision ?? 0)
  const keyOf = new Map<string, string>()
  const itemPath = new Map<string, string>()
  routeKeys.forEach((key, i) => {
    if (key === null) return
    keyOf.set(whereOf(key), key)
    itemPath.set(key, formatPath(['routes', i]))
  })
  for (const [name, key] of upstreamKeys) {
    keyOf.set(whereOf(key), key)
    itemPath.set(key, formatPath(['upstreams', name]))
  }
  const locate = (path: readonly PathSegment[]): string => {
    if (path[0] === 'routes' && typeof path[1] === 'number') {
      const key = routeKeys[path[1]]
      if (key !== undefined && key !== null) return whereOf(key)
    } else if (path[0] === 'upstreams' && typeof path[1] === 'string') {
      const key = upstreamKeys.get(path[1])
      if (key !== undefined) return whereOf(key)
    }
    return `routes.yaml ${formatPath(path)}`
  }
  return { config, keyOf, itemPath, locate }
}
