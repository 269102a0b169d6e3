// Validates a plain value against a TypeBox schema and applies its defaults in one pass, collecting every
// problem with its path. We walk the schema ourselves because TypeBox's Value.Default skips Record values
// (our upstreams) and failing union members, and Value.Errors reports every union branch; load.ts still
// runs TypeBox's own Check on the result, so the schema stays the authority.
//
// Handles the JSON Schema subset schema.ts uses: object (properties, required, additionalProperties: false),
// record (patternProperties), array (items, minItems, maxItems), anyOf, const, string (pattern, minLength,
// maxLength), integer and number (minimum, maximum, exclusiveMinimum, exclusiveMaximum), boolean, default.
import type { TSchema } from '@sinclair/typebox'
import { Access, Config, Duration, KeyConsumer, LimitKey, RouteMatch, Size, Target, Upstream } from './schema.js'
import { parseDurationMs, parseSizeBytes } from './units.js'
import { isMapping } from '../lib/plain-data.js'

export type PathSegment = string | number

/** Where an issue points: the value at `path`, the key naming it, or the object that lacks it. */
export type IssueTarget = 'value' | 'key' | 'parent'

export interface ValueIssue {
  readonly path: readonly PathSegment[]
  readonly at: IssueTarget
  readonly message: string
}

interface SchemaNode {
  readonly type?: string
  readonly const?: unknown
  readonly anyOf?: readonly SchemaNode[]
  readonly properties?: Readonly<Record<string, SchemaNode>>
  readonly required?: readonly string[]
  readonly patternProperties?: Readonly<Record<string, SchemaNode>>
  readonly items?: SchemaNode
  readonly pattern?: string
  readonly minLength?: number
  readonly maxLength?: number
  readonly minimum?: number
  readonly maximum?: number
  readonly exclusiveMinimum?: number
  readonly exclusiveMaximum?: number
  readonly minItems?: number
  readonly maxItems?: number
  readonly default?: unknown
}

/** `routes[2].rateLimit[0].burst`; keys that are not plain words are quoted: `upstreams["a.b"]`. */
export function formatPath(path: readonly PathSegment[]): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`
    else if (/^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(seg)) out += out === '' ? seg : `.${seg}`
    else out += `[${JSON.stringify(seg)}]`
  }
  return out
}

/** Returns the value with defaults applied (a new object tree; the input is not changed) and every issue. */
export function validateValue(schema: TSchema, input: unknown): { value: unknown; issues: ValueIssue[] } {
  const issues: ValueIssue[] = []
  const value = visit(schema as unknown as SchemaNode, input, [], issues)
  return { value, issues }
}

type Issues = ValueIssue[]

function visit(s: SchemaNode, v: unknown, path: PathSegment[], issues: Issues): unknown {
  if (s.anyOf !== undefined) return visitUnion(s, s.anyOf, v, path, issues)
  switch (s.type) {
    case 'object':
      return s.patternProperties === undefined ? visitObject(s, v, path, issues) : visitRecord(s.patternProperties, v, path, issues)
    case 'array':
      return visitArray(s, v, path, issues)
    case 'string':
    case 'integer':
    case 'number':
    case 'boolean':
      checkScalar(s, v, path, issues)
      return v
    default:
      return v
  }
}

function visitObject(s: SchemaNode, v: unknown, path: PathSegment[], issues: Issues): unknown {
  if (!isMapping(v)) {
    issues.push({ path: [...path], at: 'value', message: `must be a mapping, got ${found(v)}` })
    return v
  }
  const { props, entries, required } = shapeOf(s)
  for (const key in v) {
    if (!Object.hasOwn(props, key)) issues.push({ path: [...path, key], at: 'key', message: unknownField(key, Object.keys(props)) })
  }
  const out: Record<string, unknown> = {}
  for (const [key, ps] of entries) {
    let pv = v[key]
    if (pv === undefined || pv === null) {
      // An empty value (`limits:` with everything commented out) means "not set", as if the key were absent.
      if (Object.hasOwn(ps, 'default')) pv = structuredClone(ps.default)
      else if (required.has(key)) {
        issues.push(pv === null
          ? { path: [...path, key], at: 'value', message: `must be ${describe(ps)}, got an empty value` }
          : { path: [...path, key], at: 'parent', message: `missing required field "${key}"` })
        continue
      } else continue
    }
    path.push(key)
    out[key] = visit(ps, pv, path, issues)
    path.pop()
  }
  return out
}

interface Shape {
  readonly props: Readonly<Record<string, SchemaNode>>
  readonly entries: readonly (readonly [string, SchemaNode])[]
  readonly required: ReadonlySet<string>
}
const shapes = new WeakMap<SchemaNode, Shape>()
function shapeOf(s: SchemaNode): Shape {
  let shape = shapes.get(s)
  if (shape === undefined) {
    const props = s.properties ?? {}
    shape = { props, entries: Object.entries(props), required: new Set(s.required ?? []) }
    shapes.set(s, shape)
  }
  return shape
}

function visitRecord(patterns: Readonly<Record<string, SchemaNode>>, v: unknown, path: PathSegment[], issues: Issues): unknown {
  if (!isMapping(v)) {
    issues.push({ path: [...path], at: 'value', message: `must be a mapping, got ${found(v)}` })
    return v
  }
  const [keyPattern, valueSchema] = Object.entries(patterns)[0] ?? ['', {}]
  const keyRegex = regex(keyPattern)
  const out: Record<string, unknown> = {}
  for (const [key, item] of Object.entries(v)) {
    if (!keyRegex.test(key)) issues.push({ path: [...path, key], at: 'key', message: `invalid name ${JSON.stringify(key)}: must match ${keyPattern}` })
    path.push(key)
    out[key] = visit(valueSchema, item, path, issues)
    path.pop()
  }
  return out
}

function visitArray(s: SchemaNode, v: unknown, path: PathSegment[], issues: Issues): unknown {
  if (!Array.isArray(v)) {
    issues.push({ path: [...path], at: 'value', message: `must be ${describe(s)}, got ${found(v)}` })
    return v
  }
  if (s.minItems !== undefined && v.length < s.minItems) issues.push({ path: [...path], at: 'value', message: `must have at least ${s.minItems} item${s.minItems === 1 ? '' : 's'}, got ${v.length}` })
  if (s.maxItems !== undefined && v.length > s.maxItems) issues.push({ path: [...path], at: 'value', message: `must have at most ${s.maxItems} items, got ${v.length}` })
  const items = s.items
  if (items === undefined) return v
  const out: unknown[] = new Array<unknown>(v.length)
  for (let i = 0; i < v.length; i++) {
    path.push(i)
    out[i] = visit(items, v[i], path, issues)
    path.pop()
  }
  return out
}

function checkScalar(s: SchemaNode, v: unknown, path: PathSegment[], issues: Issues): void {
  const fail = (message: string): void => { issues.push({ path: [...path], at: 'value', message }) }
  const expected = describe(s)
  if (s.const !== undefined) {
    if (v !== s.const) fail(`must be ${expected}, got ${found(v)}`)
    return
  }
  switch (s.type) {
    case 'string':
      if (typeof v !== 'string') {
        const quoteHint = typeof v === 'number' || typeof v === 'boolean' ? ` (quote it: "${String(v)}")` : ''
        fail(`must be ${expected}, got ${found(v)}${quoteHint}`)
      } else if (s.minLength !== undefined && v.length < s.minLength) fail(s.minLength === 1 ? 'must not be empty' : `must be at least ${s.minLength} characters long`)
      else if (s.maxLength !== undefined && v.length > s.maxLength) fail(`must be at most ${s.maxLength} characters long, got ${v.length}`)
      else if (s.pattern !== undefined && !regex(s.pattern).test(v)) fail(`must be ${expected}, got ${found(v)}`)
      else checkUnits(s.pattern, v, fail)
      return
    case 'integer':
    case 'number': {
      const isRightType = typeof v === 'number' && (s.type === 'integer' ? Number.isInteger(v) : Number.isFinite(v))
      if (!isRightType || !isInRange(s, v)) fail(`must be ${expected}, got ${found(v)}`)
      return
    }
    case 'boolean':
      if (typeof v !== 'boolean') fail(`must be true or false, got ${found(v)}`)
      return
  }
}

// The patterns admit a few strings the parsers refuse (`1.5B` is not whole bytes); catch them at load time.
const UNIT_PARSERS: ReadonlyMap<string | undefined, (v: string) => number> = new Map([
  [Duration('').pattern, parseDurationMs],
  [Size('').anyOf[1].pattern, parseSizeBytes],
])

function checkUnits(pattern: string | undefined, v: string, fail: (message: string) => void): void {
  const parse = UNIT_PARSERS.get(pattern)
  if (parse === undefined) return
  try {
    parse(v)
  } catch (err) {
    fail(err instanceof Error ? err.message : String(err))
  }
}

function isInRange(s: SchemaNode, n: number): boolean {
  return !((s.minimum !== undefined && n < s.minimum) || (s.maximum !== undefined && n > s.maximum) ||
    (s.exclusiveMinimum !== undefined && n <= s.exclusiveMinimum) || (s.exclusiveMaximum !== undefined && n >= s.exclusiveMaximum))
}

// Unions are reported against the branch the user evidently meant: the one a discriminator (a property that
// is a literal in every branch, like `algorithm`) names, else the only branch of the value's kind, else the
// object branch sharing most keys with the value. Only then does the union as a whole fail.
function visitUnion(s: SchemaNode, branches: readonly SchemaNode[], v: unknown, path: PathSegment[], issues: Issues): unknown {
  if (literalsOf(s)?.has(v) === true) return v
  const discriminator = isMapping(v) ? findDiscriminator(branches) : undefined
  if (discriminator !== undefined && isMapping(v)) {
    const tag = v[discriminator]
    const allowed = branches.map((b) => b.properties?.[discriminator]?.const)
    const choice = branches.find((b) => b.properties?.[discriminator]?.const === tag)
    if (choice !== undefined) return visit(choice, v, path, issues)
    const list = allowed.map((a) => JSON.stringify(a)).join(', ')
    issues.push(tag === undefined || tag === null
      ? { path: [...path, discriminator], at: 'parent', message: `missing required field "${discriminator}" (one of ${list})` }
      : { path: [...path, discriminator], at: 'value', message: `must be one of ${list}, got ${found(tag)}` })
    return v
  }
  const candidates = branches.filter((b) => isSameKind(b, v))
  if (candidates.length === 1 && candidates[0] !== undefined) return visit(candidates[0], v, path, issues)
  if (candidates.length > 1 && isMapping(v) && candidates.every((b) => b.type === 'object')) {
    const keys = Object.keys(v)
    const scores = candidates.map((b) => keys.filter((k) => Object.hasOwn(b.properties ?? {}, k)).length)
    const best = Math.max(...scores)
    const bestBranches = candidates.filter((_, i) => scores[i] === best)
    if (best > 0 && bestBranches.length === 1 && bestBranches[0] !== undefined) return visit(bestBranches[0], v, path, issues)
    const forms = candidates.map((b) => `{ ${Object.keys(b.properties ?? {}).join(', ')} }`).join(' or ')
    issues.push({ path: [...path], at: 'value', message: `must be one of ${forms}, got a mapping with ${keys.length === 0 ? 'no fields' : keys.join(', ')}` })
    return v
  }
  for (const branch of candidates) {
    const trial: Issues = []
    const result = visit(branch, v, path, trial)
    if (trial.length === 0) return result
  }
  issues.push({ path: [...path], at: 'value', message: `must be ${describe(s)}, got ${found(v)}` })
  return v
}

const literalSets = new WeakMap<SchemaNode, ReadonlySet<unknown> | null>()
/** The allowed values when every branch is a literal (`balancer`, `scope`), else null. */
function literalsOf(s: SchemaNode): ReadonlySet<unknown> | null {
  let set = literalSets.get(s)
  if (set === undefined) {
    const branches = s.anyOf ?? []
    set = branches.every((b) => b.const !== undefined) ? new Set(branches.map((b) => b.const)) : null
    literalSets.set(s, set)
  }
  return set
}

function findDiscriminator(branches: readonly SchemaNode[]): string | undefined {
  const first = branches[0]?.properties
  if (first === undefined) return undefined
  return Object.keys(first).find((key) => branches.every((b) => b.type === 'object' && b.properties?.[key]?.const !== undefined))
}

function isSameKind(s: SchemaNode, v: unknown): boolean {
  if (s.anyOf !== undefined) return s.anyOf.some((b) => isSameKind(b, v))
  switch (s.type) {
    case 'integer':
    case 'number': return typeof v === 'number'
    case 'string': return typeof v === 'string'
    case 'boolean': return typeof v === 'boolean'
    case 'array': return Array.isArray(v)
    case 'object': return isMapping(v)
    default: return true
  }
}

// ---- messages -------------------------------------------------------------------------------------------

const PATTERN_HINTS: ReadonlyMap<string | undefined, string> = new Map([
  [Duration('').pattern, 'a duration such as 250ms, 5s, 1m or 1m30s'],
  [Size('').anyOf[1].pattern, 'a size such as 512KiB, 10MiB, 100kB or a number of bytes'],
  [Config.properties.listen.pattern, 'host:port, such as 0.0.0.0:8080 or [::1]:8080'],
  [Target.properties.url.pattern, 'an http(s) URL without a path, such as http://127.0.0.1:9001'],
  [LimitKey.pattern, 'client-ip, route, consumer, header:<name> or query:<name> (comma-separated to combine)'],
  [Access.properties.allow.items.pattern, 'a CIDR such as 10.0.0.0/8 or 2001:db8::/32, or one address'],
  [KeyConsumer.properties.keyHash.pattern, 'sha256: and 64 lower-case hex digits (the SHA-256 of the key)'],
  [Upstream.properties.hashKey.pattern, 'client-ip, path, header:<name> or query:<name>'],
  [RouteMatch.properties.methods.items.pattern, 'an upper-case HTTP method such as GET'],
  [RouteMatch.properties.host.pattern, 'a host name such as api.example.com or *.example.com'],
  ['^/', 'a path starting with /'],
])

function describe(s: SchemaNode): string {
  if (s.const !== undefined) return JSON.stringify(s.const)
  if (s.anyOf !== undefined) {
    const literals = s.anyOf.filter((b) => b.const !== undefined).map((b) => JSON.stringify(b.const))
    const others = s.anyOf.filter((b) => b.const === undefined).map(describe)
    const head = literals.length > 1 ? [`one of ${literals.join(', ')}`] : literals
    return [...head, ...others].join(' or ')
  }
  switch (s.type) {
    case 'string': return PATTERN_HINTS.get(s.pattern) ?? (s.pattern === undefined ? 'a string' : `a string matching ${s.pattern}`)
    case 'integer': return `an integer${rangeText(s)}`
    case 'number': return `a number${rangeText(s)}`
    case 'boolean': return 'true or false'
    case 'array': return 'a list'
    case 'object': return 'a mapping'
    default: return 'a value'
  }
}

function rangeText(s: SchemaNode): string {
  const low = s.minimum ?? s.exclusiveMinimum
  const high = s.maximum ?? s.exclusiveMaximum
  if (s.minimum !== undefined && s.maximum !== undefined) return ` from ${s.minimum} to ${s.maximum}`
  const parts: string[] = []
  if (low !== undefined) parts.push(`${s.minimum === undefined ? '>' : '>='} ${low}`)
  if (high !== undefined) parts.push(`${s.maximum === undefined ? '<' : '<='} ${high}`)
  return parts.length === 0 ? '' : ` ${parts.join(' and ')}`
}

function found(v: unknown): string {
  if (v === undefined || v === null) return 'an empty value'
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v)
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a mapping'
  return String(v)
}

function unknownField(key: string, allowed: readonly string[]): string {
  const near = allowed.filter((a) => editDistance(a.toLowerCase(), key.toLowerCase()) <= (key.length <= 4 ? 1 : 2))
  const suggestion = near.length === 0 ? '' : ` (did you mean ${JSON.stringify(near[0])}?)`
  return `unknown field ${JSON.stringify(key)}${suggestion}; allowed: ${allowed.join(', ')}`
}

/** Edits (insert, delete, replace, swap two neighbours) that turn a into b. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)))
  const at = (i: number, j: number): number => d[i]?.[j] ?? 0
  for (let i = 1; i <= a.length; i++) {
    const row = d[i] ?? []
    for (let j = 1; j <= b.length; j++) {
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + (a[i - 1] === b[j - 1] ? 0 : 1))
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, at(i - 2, j - 2) + 1)
      row[j] = best
    }
  }
  return at(a.length, b.length)
}

const regexCache = new Map<string, RegExp>()
function regex(pattern: string): RegExp {
  let r = regexCache.get(pattern)
  if (r === undefined) {
    r = new RegExp(pattern)
    regexCache.set(pattern, r)
  }
  return r
}
