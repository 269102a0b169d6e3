// `tollgate validate [F]` and `tollgate schema` (README.md "Command line"). The CLI prints and exits; validate
// imports the config's plugins (their top-level code runs), nothing else has effects.
import { ConfigError, formatIssue } from '../errors.js'
import { loadConfigFile } from '../config/load.js'
import { Config } from '../config/schema.js'
import { pluginModules } from '../policy/plugins/plugin-modules.js'

export interface CommandOutput {
  readonly exitCode: 0 | 1
  readonly stdout: string
  readonly stderr: string
}

/**
 * Exit 0 with `routes.yaml: OK — 3 routes, 2 upstreams` on stdout and any warnings and not-enforced
 * settings on stderr; or exit 1 with every problem on stderr, one per line (`F:line:col path: reason`).
 */
export async function runValidate(file: string, env: NodeJS.ProcessEnv): Promise<CommandOutput> {
  try {
    // TOLLGATE_CONFIG and friends steer the process; TOLLGATE_LOG_LEVEL is the override of log.level.
    const loaded = loadConfigFile(file, env)
    const { config, warnings, notEnforced } = loaded
    // The plugins are imported and checked as the gateway would (README "Plugins"): their top-level code runs.
    const pluginIssues = await pluginModules.prepare(config, loaded.locate, file)
    if (pluginIssues.length > 0) throw new ConfigError(pluginIssues)
    const routes = plural(config.routes.length, 'route')
    const upstreams = plural(Object.keys(config.upstreams).length, 'upstream')
    const notes = [
      ...warnings.map((w) => `warning: ${formatIssue(w)}`),
      ...notEnforced.map((n) => `not enforced yet: ${n}`),
    ]
    return { exitCode: 0, stdout: `${file}: OK — ${routes}, ${upstreams}\n`, stderr: lines(notes) }
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    const errors = err.issues.filter((i) => i.severity === 'error')
    const warnings = err.issues.filter((i) => i.severity === 'warning')
    const summary = `${file}: invalid — ${plural(errors.length, 'error')}`
    return {
      exitCode: 1,
      stdout: '',
      stderr: lines([...errors.map(formatIssue), ...warnings.map((w) => `warning: ${formatIssue(w)}`), summary]),
    }
  }
}

/** The JSON Schema of routes.yaml, as committed in schema/routes.schema.json. */
export function schemaJson(): string {
  // TypeBox keeps its own metadata under symbol keys, which JSON.stringify leaves out.
  const schema = JSON.parse(JSON.stringify(Config)) as unknown
  return `${JSON.stringify({ $schema: 'http://json-schema.org/draft-07/schema#', ...forEditors(schema) }, null, 2)}\n`
}

// Two differences from TypeBox's validation schema, both matching what the loader accepts: a field with a
// default is not required in the file (TypeBox lists it as required because Config always has it), and a
// record refuses names outside its key pattern (the loader reports them).
function forEditors(node: unknown): Record<string, unknown> {
  if (typeof node !== 'object' || node === null) return {}
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(node)) {
    if (Array.isArray(value)) out[key] = value.map((v: unknown) => (typeof v === 'object' && v !== null ? forEditors(v) : v))
    else if (typeof value === 'object' && value !== null && key !== 'default' && key !== 'const') {
      out[key] = key === 'properties' || key === 'patternProperties'
        ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, forEditors(v)]))
        : forEditors(value)
    } else out[key] = value
  }
  const properties = out.properties
  if (Array.isArray(out.required) && typeof properties === 'object' && properties !== null) {
    const required = out.required.filter((k) => typeof k === 'string' && !Object.hasOwn((properties as Record<string, object>)[k] ?? {}, 'default'))
    if (required.length === 0) delete out.required
    else out.required = required
  }
  if (out.patternProperties !== undefined && out.additionalProperties === undefined) out.additionalProperties = false
  return out
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`
}

function lines(items: readonly string[]): string {
  return items.length === 0 ? '' : `${items.join('\n')}\n`
}
