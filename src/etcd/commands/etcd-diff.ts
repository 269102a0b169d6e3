// What `tollgate etcd put` would change: the routes and upstreams of a file against those in etcd,
// compared after validation (defaults applied), so a value written differently but meaning the same
// thing is unchanged. One line per item, field by field for a changed one.
import { itemKey, parseItem, parseItemKey, type EtcdItemKey } from '../keys.js'
import type { KeyValue } from '../client.js'

/** One route or upstream of the file, as it would be written. */
export interface DesiredItem {
  readonly key: string
  readonly item: EtcdItemKey
  /** The JSON text written to etcd. */
  readonly value: string
}

export type Change =
  | { readonly op: 'add'; readonly key: string; readonly value: string }
  | { readonly op: 'change'; readonly key: string; readonly value: string; readonly modRevision: number; readonly details: readonly string[] }
  | { readonly op: 'delete'; readonly key: string; readonly modRevision: number }

export interface Plan {
  /** Revision of etcd the plan was made against: the transaction is guarded by it. */
  readonly revision: number
  readonly changes: readonly Change[]
  readonly unchanged: number
  /** Keys only in etcd, left alone without --prune. */
  readonly kept: readonly string[]
}

/** Routes and upstreams of a file's raw YAML value (after ${VAR}), keyed as in etcd. */
export function desiredItems(prefix: string, raw: { routes?: unknown; upstreams?: unknown }): DesiredItem[] {
  const out: DesiredItem[] = []
  const upstreams = raw.upstreams
  if (typeof upstreams === 'object' && upstreams !== null && !Array.isArray(upstreams)) {
    for (const [name, value] of Object.entries(upstreams)) {
      const item: EtcdItemKey = { kind: 'upstream', name }
      out.push({ key: itemKey(prefix, item), item, value: JSON.stringify(value ?? {}) })
    }
  }
  if (Array.isArray(raw.routes)) {
    for (const route of raw.routes as unknown[]) {
      if (typeof route !== 'object' || route === null) continue
      const { id, ...rest } = route as Record<string, unknown>
      if (typeof id !== 'string') continue
      const item: EtcdItemKey = { kind: 'route', id }
      // The key carries the id; the value may omit it (README.md "Running several instances against etcd").
      out.push({ key: itemKey(prefix, item), item, value: JSON.stringify(rest) })
    }
  }
  return out
}

export function planPut(prefix: string, desired: readonly DesiredItem[], current: readonly KeyValue[], revision: number, prune: boolean): Plan {
  const now = new Map<string, KeyValue>()
  for (const kv of current) {
    const item = parseItemKey(prefix, kv.key)
    if (item !== null && item.kind !== 'service') now.set(kv.key, kv)
  }
  const changes: Change[] = []
  let unchanged = 0
  const wanted = new Set<string>()
  for (const d of desired) {
    wanted.add(d.key)
    const existing = now.get(d.key)
    if (existing === undefined) {
      changes.push({ op: 'add', key: d.key, value: d.value })
      continue
    }
    const before = normalized(d.item, existing.value)
    const after = normalized(d.item, d.value)
    if (before.ok && after.ok) {
      const details = diffValues(before.value, after.value, '')
      if (details.length === 0) unchanged++
      else changes.push({ op: 'change', key: d.key, value: d.value, modRevision: existing.modRevision, details })
    } else {
      changes.push({ op: 'change', key: d.key, value: d.value, modRevision: existing.modRevision, details: [`replaces an invalid value (${before.ok ? '' : before.reason})`] })
    }
  }
  const kept: string[] = []
  for (const [key, kv] of [...now.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (wanted.has(key)) continue
    if (prune) changes.push({ op: 'delete', key, modRevision: kv.modRevision })
    else kept.push(key)
  }
  return { revision, changes, unchanged, kept }
}

/** Lines for the terminal: `+ routes/a`, `~ routes/b  match.path: "/x" -> "/y"`, `- upstreams/c`. */
export function formatPlan(prefix: string, plan: Plan): string[] {
  const base = prefix.endsWith('/') ? prefix : `${prefix}/`
  const short = (key: string): string => (key.startsWith(base) ? key.slice(base.length) : key)
  const width = Math.max(0, ...plan.changes.map((c) => short(c.key).length), ...plan.kept.map((k) => short(k).length))
  const lines: string[] = []
  for (const c of plan.changes) {
    const name = short(c.key).padEnd(width)
    if (c.op === 'add') lines.push(`+ ${name}  (new)`)
    else if (c.op === 'delete') lines.push(`- ${name}  (deleted: not in the file, --prune)`)
    else lines.push(`~ ${name}  ${c.details.join('; ')}`)
  }
  for (const k of plan.kept) lines.push(`  ${short(k).padEnd(width)}  (only in etcd: kept; --prune deletes it)`)
  const adds = plan.changes.filter((c) => c.op === 'add').length
  const edits = plan.changes.filter((c) => c.op === 'change').length
  const deletes = plan.changes.filter((c) => c.op === 'delete').length
  lines.push(`${plan.changes.length} change${plan.changes.length === 1 ? '' : 's'} (${adds} new, ${edits} changed, ${deletes} deleted), ${plan.unchanged} unchanged`)
  return lines
}

function normalized(item: EtcdItemKey, value: string): { ok: true; value: unknown } | { ok: false; reason: string } {
  const r = parseItem(item, value)
  if (!('parsed' in r)) return { ok: false, reason: r.reason }
  const p = r.parsed
  return { ok: true, value: p.kind === 'route' ? p.route : p.kind === 'upstream' ? p.upstream : p.target }
}

/** Field-level differences of two JSON values, as `path: old -> new`. */
export function diffValues(a: unknown, b: unknown, path: string): string[] {
  if (isObject(a) && isObject(b)) {
    const out: string[] = []
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()
    for (const k of keys) {
      const p = path === '' ? k : `${path}.${k}`
      if (!(k in b)) out.push(`${p}: ${show(a[k])} -> (removed)`)
      else if (!(k in a)) out.push(`${p}: (unset) -> ${show(b[k])}`)
      else out.push(...diffValues(a[k], b[k], p))
    }
    return out
  }
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) {
    return a.flatMap((x, i) => diffValues(x, b[i], `${path}[${i}]`))
  }
  return canonical(a) === canonical(b) ? [] : [`${path === '' ? '(value)' : path}: ${show(a)} -> ${show(b)}`]
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function show(v: unknown): string {
  const text = JSON.stringify(v) ?? 'undefined'
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}

/** JSON with object keys sorted: equal values give equal text. */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`
  if (isObject(v)) return `{${Object.keys(v).sort().filter((k) => v[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`
  return JSON.stringify(v) ?? 'null'
}
