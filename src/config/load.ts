// The one config pipeline: YAML text -> ${VAR} substitution -> TOLLGATE_* overrides -> schema validation
// with defaults -> cross-checks -> deep-frozen Config. Every problem of a file is collected and thrown at
// once as a ConfigError, each located as `file:line:col` (or the TOLLGATE_* variable that set the value).
// Durations become milliseconds and sizes bytes here, once (schema.ts Duration and Size): nothing
// downstream parses them again. The files of `tls:` are read and checked here too (tls-files.ts): they are
// part of the config, and the loaded Config carries their PEM.
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { TransformDecode } from '@sinclair/typebox/value'
import { ConfigError, type ConfigIssue } from '../errors.js'
import { checkConfig, listNotEnforced, type Locate } from './check.js'
import { applyEnvOverrides } from './env-overrides.js'
import { Config } from './schema.js'
import { formatPath, validateValue, type IssueTarget, type PathSegment, type ValueIssue } from './validate-value.js'
import { parseYamlSource } from './yaml-source.js'
import { loadTlsFiles, loadUpstreamTlsFiles, type TlsPaths, type UpstreamTlsPaths } from './tls-files.js'
import { readJwtKeyFiles } from './auth-keys.js'
import { deepFreeze } from '../lib/plain-data.js'

export interface LoadResult {
  readonly config: Config
  readonly warnings: readonly ConfigIssue[]
  /** Settings present in the config whose behaviour is not enforced yet, one line each. */
  readonly notEnforced: readonly string[]
  /** Locates a path of this config as `file:line:col`: for the checks made after loading (plugin configs, README "Plugins"). */
  readonly locate: Locate
}

/** Loads routes.yaml text; `file` names it in messages. Throws ConfigError with every problem found. */
export function loadConfigText(text: string, file: string, env: NodeJS.ProcessEnv = process.env): LoadResult {
  const source = parseYamlSource(text, file, env)
  if (source.issues.some(isError)) throw new ConfigError(inFileOrder(source.issues))
  const issues: ConfigIssue[] = [...source.issues]

  const root = source.value ?? {}
  if (typeof root !== 'object' || Array.isArray(root)) {
    throw new ConfigError([...issues, { where: source.locate([]), path: '', message: 'the file must be a mapping of settings (listen:, upstreams:, routes:, ...)', severity: 'error' }])
  }
  const overrides = applyEnvOverrides(root as Record<string, unknown>, env)
  issues.push(...overrides.issues)
  const locate = (path: readonly PathSegment[], at: IssueTarget = 'value'): string =>
    overrides.variableFor(path) ?? source.locate(path, at)

  const validated = validateValue(Config, root)
  for (const issue of validated.issues) issues.push(toConfigIssue(issue, locate))
  const isValid = validityOf(validated.issues)
  if (validated.issues.length === 0 && !configCheck().Check(validated.value)) {
    // The walker and TypeBox disagree: a bug in validate-value.ts. Never accept what TypeBox refuses.
    for (const e of configCheck().Errors(validated.value)) {
      const path = e.path.split('/').slice(1).map((s) => (/^\d+$/.test(s) ? Number(s) : s.replace(/~1/g, '/').replace(/~0/g, '~')))
      issues.push({ where: locate(path), path: formatPath(path), message: e.message, severity: 'error' })
    }
    throw new ConfigError(inFileOrder(issues))
  }
  // Decoded only when valid (TypeBox checked it just above); otherwise the cross-checks below read only
  // paths that validated, none of them a duration or a size.
  const config = (validated.issues.length === 0 ? TransformDecode(Config, [], validated.value) : validated.value) as Config
  // JWT public key files become their PEM text before the checks read them (auth-keys.ts).
  const keyIssues = readJwtKeyFiles(config, file, locate, isValid)
  issues.push(...keyIssues)
  const unread = new Set(keyIssues.map((i) => i.path))
  issues.push(...checkConfig(config, locate, unread.size === 0 ? isValid : (path) => isValid(path) && !unread.has(formatPath(path))))
  // The certificate files are read only for a valid tls: section (their paths decoded); their problems are
  // config errors like any other (tls-files.ts); so are those of the upstreams' tls: sections.
  if (config.tls !== undefined && isValid(['tls'])) {
    const files = loadTlsFiles(config.tls as unknown as TlsPaths, file, locate)
    issues.push(...files.issues)
    if (files.tls !== null) config.tls = files.tls
  }
  for (const [name, upstream] of Object.entries(config.upstreams)) {
    if (upstream.tls === undefined || !isValid(['upstreams', name, 'tls'])) continue
    const files = loadUpstreamTlsFiles(name, upstream.tls as UpstreamTlsPaths, file, locate)
    issues.push(...files.issues)
    if (files.tls !== null) (upstream as { tls?: unknown }).tls = files.tls
  }
  if (issues.some(isError)) throw new ConfigError(inFileOrder(issues))
  resolvePluginModules(config, file)

  const result = deepFreeze({
    config,
    warnings: inFileOrder(issues.filter((i) => i.severity === 'warning')),
    notEnforced: listNotEnforced(config),
  })
  return Object.freeze({ ...result, locate })
}

/**
 * A plugin's `module` is relative to the config file (README "Plugins"): made absolute here, once, so that a
 * cluster worker and the table build need no file name. Importing and checking them is asynchronous and
 * comes after this (src/policy/plugins/plugin-modules.ts).
 */
function resolvePluginModules(config: Config, file: string): void {
  const base = dirname(resolve(file))
  for (const route of config.routes) {
    for (const plugin of route.plugins ?? []) (plugin as { module: string }).module = resolve(base, plugin.module)
  }
}

/** Reads and loads a file; messages name `path` as given. */
export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): LoadResult {
  return loadConfigText(readConfigText(path), path, env)
}

/** The text of the config file, or a ConfigError that says in plain words why it cannot be read. */
export function readConfigText(path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (err) {
    const code = err instanceof Error && 'code' in err ? err.code : undefined
    const reason = code === 'ENOENT' ? 'no such file'
      : code === 'EISDIR' ? 'it is a directory; name the routes.yaml file in it'
        : code === 'EACCES' ? 'permission denied'
          : err instanceof Error ? err.message : String(err)
    throw new ConfigError([{ where: path, path: '', message: `cannot read the config file: ${reason}`, severity: 'error' }])
  }
}

function isError(issue: ConfigIssue): boolean {
  return issue.severity === 'error'
}

function toConfigIssue(issue: ValueIssue, locate: (path: readonly PathSegment[], at: IssueTarget) => string): ConfigIssue {
  return { where: locate(issue.path, issue.at), path: formatPath(issue.path), message: issue.message, severity: 'error' }
}

/** Issues sorted by line and column; those located by a TOLLGATE_* variable come first. */
function inFileOrder(issues: readonly ConfigIssue[]): ConfigIssue[] {
  const position = (issue: ConfigIssue): number => {
    const m = /:(\d+):(\d+)$/.exec(issue.where)
    return m === null ? -1 : Number(m[1]) * 100_000 + Number(m[2])
  }
  return issues
    .map((issue) => ({ issue, at: position(issue) }))
    .sort((a, b) => a.at - b.at || (a.at === -1 ? a.issue.where.localeCompare(b.issue.where) : 0))
    .map((x) => x.issue)
}

/** A path is valid when no schema issue lies at, above or below it. */
function validityOf(issues: readonly ValueIssue[]): (path: readonly PathSegment[]) => boolean {
  if (issues.length === 0) return () => true
  const exact = new Set<string>()
  const within = new Set<string>()
  for (const issue of issues) {
    exact.add(formatPath(issue.path))
    for (let n = 0; n <= issue.path.length; n++) within.add(formatPath(issue.path.slice(0, n)))
  }
  return (path) => {
    if (within.has(formatPath(path))) return false
    for (let n = 0; n < path.length; n++) if (exact.has(formatPath(path.slice(0, n)))) return false
    return true
  }
}

let compiled: TypeCheck<typeof Config> | undefined
function configCheck(): TypeCheck<typeof Config> {
  compiled ??= TypeCompiler.Compile(Config)
  return compiled
}
