// etcd keys and values one at a time (README.md "Running several instances against etcd"): which item a key
// under the prefix names, and whether a value is a valid item of that kind, checked alone with the schema of
// one routes.yaml entry.
import { Value } from '@sinclair/typebox/value'
import { EtcdRoute, Route, Target, Upstream } from '../config/schema.js'
import { formatPath, validateValue, type PathSegment } from '../config/validate-value.js'

export type EtcdItemKey =
  | { readonly kind: 'route'; readonly id: string }
  | { readonly kind: 'upstream'; readonly name: string }
  | { readonly kind: 'service'; readonly upstream: string; readonly instance: string }

/** A valid item, with defaults applied. */
export type ParsedItem =
  | { readonly kind: 'route'; readonly id: string; readonly route: Route }
  | { readonly kind: 'upstream'; readonly name: string; readonly upstream: Upstream }
  | { readonly kind: 'service'; readonly upstream: string; readonly instance: string; readonly target: Target }

const ROUTE_ID = Route.properties.id
const UPSTREAM_NAME = /^[A-Za-z0-9_.-]+$/

/** `/tollgate/` (always one trailing slash) for a configured prefix `/tollgate` or `/tollgate/`. */
export function keyPrefix(prefix: string): string {
  return prefix.endsWith('/') ? prefix : `${prefix}/`
}

/** What a key under the prefix holds; null for keys of no concern (other folders). */
export function parseItemKey(prefix: string, key: string): EtcdItemKey | null {
  const base = keyPrefix(prefix)
  if (!key.startsWith(base)) return null
  const rest = key.slice(base.length)
  const slash = rest.indexOf('/')
  if (slash <= 0) return null
  const folder = rest.slice(0, slash)
  const name = rest.slice(slash + 1)
  if (name === '') return null
  if (folder === 'routes') return name.includes('/') ? null : { kind: 'route', id: name }
  if (folder === 'upstreams') return name.includes('/') ? null : { kind: 'upstream', name }
  if (folder === 'services') {
    const i = name.indexOf('/')
    if (i <= 0 || i === name.length - 1) return null
    return { kind: 'service', upstream: name.slice(0, i), instance: name.slice(i + 1) }
  }
  return null
}

export function itemKey(prefix: string, item: EtcdItemKey): string {
  const base = keyPrefix(prefix)
  switch (item.kind) {
    case 'route': return `${base}routes/${item.id}`
    case 'upstream': return `${base}upstreams/${item.name}`
    case 'service': return `${base}services/${item.upstream}/${item.instance}`
  }
}

/** `etcd /tollgate/routes/users (rev 812)`: where an etcd issue is, in the style of `file:line:col`. */
export function etcdWhere(key: string, revision: number): string {
  return `etcd ${key} (rev ${revision})`
}

/** Validates one value on its own. Returns the parsed item, or every problem as one line. */
export function parseItem(item: EtcdItemKey, value: string): { parsed: ParsedItem } | { reason: string } {
  let json: unknown
  try {
    json = JSON.parse(value)
  } catch (err) {
    return { reason: `not valid JSON: ${(err as Error).message}` }
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return { reason: `must be a JSON object, got ${Array.isArray(json) ? 'a list' : json === null ? 'null' : typeof json}` }
  }
  switch (item.kind) {
    case 'route': {
      const idIssues = validateValue(ROUTE_ID, item.id).issues
      if (idIssues.length > 0) return { reason: `the key's route id ${JSON.stringify(item.id)} ${idIssues[0]!.message}` }
      const r = validateValue(EtcdRoute, json)
      if (r.issues.length > 0) return { reason: joinIssues(r.issues) }
      const route = r.value as Record<string, unknown>
      if (route['id'] !== undefined && route['id'] !== item.id) {
        return { reason: `id: ${JSON.stringify(route['id'])} differs from the key's id ${JSON.stringify(item.id)}; omit id or make them equal` }
      }
      // A plugin is code the gateway runs, loaded from a file next to routes.yaml (README "Plugins"): write access
      // to etcd must not be enough to make the gateway run a file.
      if (route['plugins'] !== undefined) return { reason: 'plugins: are read from routes.yaml only; move this route to the file or drop its plugins' }
      return { parsed: { kind: 'route', id: item.id, route: { ...(Value.Decode(EtcdRoute, route) as object), id: item.id } as Route } }
    }
    case 'upstream': {
      if (!UPSTREAM_NAME.test(item.name)) return { reason: `the key's upstream name ${JSON.stringify(item.name)} must match ${UPSTREAM_NAME.source}` }
      const r = validateValue(Upstream, json)
      if (r.issues.length > 0) return { reason: joinIssues(r.issues) }
      // Certificate files are read next to routes.yaml and watched with it (config/tls-files.ts); an etcd value
      // names no directory and no watch would see its files change.
      if ((r.value as { tls?: unknown }).tls !== undefined) {
        return { reason: 'tls: not supported in an etcd upstream; define an upstream with tls in routes.yaml, where its files are read and watched' }
      }
      return { parsed: { kind: 'upstream', name: item.name, upstream: Value.Decode(Upstream, r.value) as Upstream } }
    }
    case 'service': {
      const r = validateValue(Target, json)
      if (r.issues.length > 0) return { reason: joinIssues(r.issues) }
      return { parsed: { kind: 'service', upstream: item.upstream, instance: item.instance, target: r.value as Target } }
    }
  }
}

function joinIssues(issues: readonly { path: readonly PathSegment[]; message: string }[]): string {
  const shown = issues.slice(0, 5).map((i) => (i.path.length === 0 ? i.message : `${formatPath(i.path)}: ${i.message}`))
  return shown.join('; ') + (issues.length > 5 ? `; and ${issues.length - 5} more` : '')
}
