// TOLLGATE_<PATH> overrides (README.md "Configuration", **Environment**): `TOLLGATE_LIMITS_MAXBODYSIZE=5MiB`
// sets limits.maxBodySize. Each `_` separates one key (config keys are camelCase, never contain `_`), matched
// case-insensitively against the schema. Only scalar (and scalar-list) settings of fixed sections can be set
// this way, not routes or upstreams. The string is turned into the setting's type here; validation then
// reports what is still wrong, located at the variable's name. A variable that names no setting is a
// warning and is ignored (README "Configuration", Environment): Kubernetes injects service links (TOLLGATE_PORT, TOLLGATE_SERVICE_HOST,
// TOLLGATE_PORT_8080_TCP_ADDR...) into every pod of a namespace with a Service named tollgate, and those are
// skipped without a word.
import type { ConfigIssue } from '../errors.js'
import { Config } from './schema.js'
import { formatPath } from './validate-value.js'

export const ENV_PREFIX = 'TOLLGATE_'

/**
 * TOLLGATE_* variables that steer the process, not the config: never read as overrides. (TOLLGATE_LOG_LEVEL and
 * TOLLGATE_LOG_FORMAT are overrides of log.level and log.format; src/telemetry/log.ts also reads them before the
 * file, for the first lines.)
 */
export const PROCESS_VARIABLES: ReadonlySet<string> = new Set(['TOLLGATE_CONFIG', 'TOLLGATE_WORKER', 'TOLLGATE_WORKERS', 'TOLLGATE_FROM_FLAGS', 'TOLLGATE_TEST_LOG'])

/**
 * Kubernetes service links of a Service named `tollgate` or `tollgate-<x>` (upper-cased, `-` as `_`):
 * <NAME>_SERVICE_HOST, <NAME>_SERVICE_PORT[_<port name>], <NAME>_PORT, <NAME>_PORT_<n>_<proto>[_ADDR|_PORT|_PROTO].
 */
const SERVICE_LINK = /^TOLLGATE(_[A-Z0-9]+)*_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_(ADDR|PORT|PROTO))?)?)$/

interface SchemaNode {
  readonly type?: string
  readonly anyOf?: readonly SchemaNode[]
  readonly properties?: Readonly<Record<string, SchemaNode>>
  readonly patternProperties?: Readonly<Record<string, SchemaNode>>
  readonly items?: SchemaNode
}

export interface EnvOverrides {
  readonly issues: readonly ConfigIssue[]
  /** The variable that set the value at `path` (or at one of its ancestors), if any. */
  variableFor(path: readonly (string | number)[]): string | undefined
}

/** Applies the overrides to `root` (a plain mapping, changed in place). */
export function applyEnvOverrides(root: Record<string, unknown>, env: NodeJS.ProcessEnv): EnvOverrides {
  const issues: ConfigIssue[] = []
  const bySetting = new Map<string, string>()
  const names = Object.keys(env).filter((n) => n.startsWith(ENV_PREFIX) && !PROCESS_VARIABLES.has(n)).sort()
  // `tollgate --listen A` passes A as TOLLGATE_LISTEN; its problems are the flag's (src/cli.ts).
  const flags = new Set((env['TOLLGATE_FROM_FLAGS'] ?? '').split(',').filter((f) => f !== ''))
  const sourceOf = (name: string): string => {
    const flag = name.slice(ENV_PREFIX.length).toLowerCase()
    return flags.has(flag) ? `--${flag}` : name
  }
  for (const name of names) {
    const raw = env[name]
    if (raw === undefined) continue
    const resolved = resolveSetting(name)
    if (typeof resolved === 'string') {
      if (!SERVICE_LINK.test(name)) issues.push({ where: name, path: '', message: `${resolved} (ignored)`, severity: 'warning' })
      continue
    }
    const { path, leaf } = resolved
    let parent = root
    for (let i = 0; i < path.length - 1; i++) {
      const key = path[i] ?? ''
      const child = parent[key]
      if (typeof child === 'object' && child !== null && !Array.isArray(child)) {
        parent = child as Record<string, unknown>
      } else {
        // The override creates the section (TOLLGATE_REDIS_URL with no redis: in the file).
        const created: Record<string, unknown> = {}
        parent[key] = created
        parent = created
        if (!bySetting.has(formatPath(path.slice(0, i + 1)))) bySetting.set(formatPath(path.slice(0, i + 1)), name)
      }
    }
    parent[path[path.length - 1] ?? ''] = coerce(raw, leaf)
    bySetting.set(formatPath(path), sourceOf(name))
  }
  return {
    issues,
    variableFor(path) {
      for (let n = path.length; n > 0; n--) {
        const name = bySetting.get(formatPath(path.slice(0, n)))
        if (name !== undefined) return name
      }
      return undefined
    },
  }
}

function resolveSetting(name: string): { path: string[]; leaf: SchemaNode } | string {
  const segments = name.slice(ENV_PREFIX.length).split('_')
  let node = Config as unknown as SchemaNode
  const path: string[] = []
  for (const segment of segments) {
    const props = node.properties
    if (node.type !== 'object' || props === undefined || node.patternProperties !== undefined) {
      return `${formatPath(path)} cannot be set from the environment; only settings outside routes and upstreams can`
    }
    const key = Object.keys(props).find((k) => k.toUpperCase() === segment.toUpperCase())
    const next = key === undefined ? undefined : props[key]
    if (key === undefined || next === undefined) {
      const scope = path.length === 0 ? 'top-level settings' : `settings under ${formatPath(path)}`
      return `names no setting: ${JSON.stringify(segment)} is not one of the ${scope}: ${Object.keys(props).filter((k) => k !== '$schema').join(', ')}`
    }
    path.push(key)
    node = next
  }
  if (node.type === 'object') {
    const example = node.properties === undefined ? '' : Object.keys(node.properties)[0] ?? ''
    return node.patternProperties !== undefined || example === ''
      ? `${formatPath(path)} cannot be set from the environment; only settings outside routes and upstreams can`
      : `${formatPath(path)} is a section; set one of its settings, e.g. ${name}_${example.toUpperCase()}`
  }
  if (node.type === 'array' && node.items?.type === 'object') {
    return `${formatPath(path)} cannot be set from the environment; only settings outside routes and upstreams can`
  }
  return { path, leaf: node }
}

const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/

/** The string as the setting's type, or the string itself when it is not one (validation then says why). */
function coerce(raw: string, s: SchemaNode): unknown {
  const wantsNumber = s.type === 'integer' || s.type === 'number' || (s.anyOf?.some((b) => b.type === 'integer' || b.type === 'number') ?? false)
  const text = raw.trim()
  if (s.type === 'boolean') return /^true$/i.test(text) ? true : /^false$/i.test(text) ? false : raw
  if (wantsNumber && NUMBER.test(text)) return Number(text)
  if (s.type === 'array') {
    if (text.startsWith('[')) {
      try {
        return JSON.parse(text) as unknown
      } catch {
        return raw
      }
    }
    const item = s.items ?? {}
    return text === '' ? [] : text.split(',').map((part) => coerce(part.trim(), item))
  }
  return raw
}
