// The plugin modules of the config in force and of the one being loaded (README "Plugins"): imported with
// dynamic import() at config load, checked (hooks are functions, configSchema compiles, each route's config
// passes it) and kept by absolute file name for the table build, which is synchronous and only looks up.
//
// ES modules are cached by URL for the life of the process, so a changed plugin file is imported under a new
// URL: `file:///.../plugin.js?v=<sha256 of its content, 16 hex digits>`. The same content keeps its URL and is
// not imported again. The trade-off: every distinct content of a plugin file loaded since start keeps its
// module (code and top-level state) in memory until the process restarts; Node has no way to unload an ES
// module. A few edits a day cost kilobytes; generating plugin files in a loop would grow without bound.
//
// A plugin's top-level code runs in the gateway process when it is imported: at start, on a reload that
// brings a new content, and in `tollgate validate`.
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { basename, extname } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { Ajv, ErrorObject, ValidateFunction } from 'ajv'
import type { Config } from '../../config/schema.js'
import { formatPath, type IssueTarget, type PathSegment } from '../../config/validate-value.js'
import type { ConfigIssue } from '../../errors.js'
import { HOOK_NAMES, type PluginModule } from './plugin-api.js'

type AnyHook = (ctx: never) => unknown

/** One plugin file as imported and checked. */
export interface LoadedPluginModule {
  readonly file: string
  /** The URL it was imported under (with its content version). */
  readonly url: string
  /** contentVersion() of the content imported. */
  readonly version: string
  /** The `plugin` label of tollgate_plugin_errors_total: the file name without its extension. */
  readonly name: string
  readonly onRequest: AnyHook | null
  readonly onResponse: AnyHook | null
  readonly onLog: AnyHook | null
  /** configSchema compiled, or null when the module has none (any mapping is accepted). */
  readonly validate: ValidateFunction | null
}

/** The fields of a plugin failure's log line. */
export interface PluginFailure {
  readonly route: string
  readonly plugin: string
  readonly hook: string
  readonly reason: 'threw' | 'timeout'
  /** Failures not logged since the last line (over 10 a second). */
  readonly suppressed: number
}

/** Locates a config path as `file:line:col` (config/load.ts LoadResult.locate); null: the file name alone. */
export type PluginLocate = (path: readonly PathSegment[], at?: IssueTarget) => string

export class PluginModules {
  /** By absolute file name: the version the last successful prepare() checked. */
  readonly #byFile = new Map<string, LoadedPluginModule>()
  /** Made on the first configSchema: ajv is imported then, so a gateway without plugins never loads it. */
  #ajv: Ajv | null = null
  /** How long a plugin's import (its top-level code) may take before it is a config error. */
  loadTimeoutMs = 10_000

  #onFirstImport: (() => void) | null = null

  /** `fn` runs once, before the first plugin is imported (the process installs its rejection guard then). */
  beforeFirstImport(fn: () => void): void {
    this.#onFirstImport = fn
  }

  /**
   * Imports and checks every plugin `config` names. Returns its problems, one issue per problem, located at
   * the plugin's `module` or `config` key; none means the table build will find every module. Modules not
   * named any more are forgotten here (their ES module stays in Node's cache: see the header).
   */
  async prepare(config: Config, locate: PluginLocate | null, fallbackWhere: string): Promise<ConfigIssue[]> {
    const issues: ConfigIssue[] = []
    const where = (path: readonly PathSegment[], at?: IssueTarget): string => (locate === null ? fallbackWhere : locate(path, at))
    const next = new Map<string, LoadedPluginModule | null>()
    for (let r = 0; r < config.routes.length; r++) {
      const plugins = config.routes[r]!.plugins
      if (plugins === undefined) continue
      for (let p = 0; p < plugins.length; p++) {
        const entry = plugins[p]!
        const at: PathSegment[] = ['routes', r, 'plugins', p]
        let loaded = next.get(entry.module)
        if (loaded === undefined) {
          const result = await this.#load(entry.module)
          loaded = 'problem' in result ? null : result.loaded
          next.set(entry.module, loaded)
          if ('problem' in result) issues.push({ where: where([...at, 'module']), path: formatPath([...at, 'module']), message: result.problem, severity: 'error' })
        }
        if (loaded === null || loaded.validate === null) continue
        if (!loaded.validate(entry.config)) {
          for (const e of loaded.validate.errors ?? []) issues.push(configIssue(e, [...at, 'config'], where))
        }
      }
    }
    if (issues.length > 0) return issues
    this.#byFile.clear()
    for (const [file, loaded] of next) if (loaded !== null) this.#byFile.set(file, loaded)
    return issues
  }

  /** Where failing hooks are told (the process's log: lifecycle/plugin-guard.ts); null: counted only. */
  #reporter: ((fields: PluginFailure, message: string) => void) | null = null
  #reportWindowMs = 0
  #reported = 0
  #suppressed = 0

  reportFailuresTo(reporter: (fields: PluginFailure, message: string) => void): void {
    this.#reporter = reporter
  }

  /**
   * A hook failed (plugin-call.ts; it counted it already): one warn line with the plugin's error, at most 10 a
   * second, so a plugin failing every request cannot flood the log; `suppressed` counts those held back.
   */
  reportFailure(route: string, plugin: { readonly name: string; readonly timeoutMs: number }, hook: string, err: unknown): void {
    const reporter = this.#reporter
    if (reporter === null) return
    const now = Date.now()
    if (now - this.#reportWindowMs >= 1000) {
      this.#reportWindowMs = now
      this.#reported = 0
    }
    if (this.#reported >= 10) {
      this.#suppressed++
      return
    }
    this.#reported++
    const suppressed = this.#suppressed
    this.#suppressed = 0
    const reason = err === null ? 'timeout' : 'threw'
    const message = err === null ? `plugin ${plugin.name} ${hook} ran past its timeout (${plugin.timeoutMs} ms)` : `plugin ${plugin.name} ${hook} failed: ${firstLine(err)}`
    reporter({ route, plugin: plugin.name, hook, reason, suppressed }, message)
  }

  /** The module prepare() checked for `file`. A miss is a bug (the config was not prepared), not a config error. */
  get(file: string): LoadedPluginModule {
    const loaded = this.#byFile.get(file)
    if (loaded === undefined) throw new Error(`plugin ${file} was not loaded before the table build (PluginModules.prepare)`)
    return loaded
  }

  /** The content version of `file` as last prepared; '' when it is not loaded. */
  versionOf(file: string): string {
    return this.#byFile.get(file)?.version ?? ''
  }

  async #load(file: string): Promise<{ loaded: LoadedPluginModule } | { problem: string }> {
    let content: Buffer
    try {
      content = await readFile(file)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      const reason = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : firstLine(err)
      return { problem: `cannot read the plugin ${file}: ${reason}` }
    }
    const version = contentVersion(content)
    const url = `${pathToFileURL(file).href}?v=${version}`
    const known = this.#byFile.get(file)
    if (known !== undefined && known.url === url) return { loaded: known }
    if (this.#onFirstImport !== null) {
      this.#onFirstImport()
      this.#onFirstImport = null
    }
    let ns: Record<string, unknown>
    let timer: NodeJS.Timeout | undefined
    try {
      // Bounded: a top-level await that never settles must not hold every later reload (they run in turn).
      const timedOut = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`its top-level code did not finish within ${this.loadTimeoutMs} ms`)), this.loadTimeoutMs)
      })
      ns = await Promise.race([import(url) as Promise<Record<string, unknown>>, timedOut])
    } catch (err) {
      return { problem: `the plugin ${file} failed to load: ${firstLine(err)}` }
    } finally {
      clearTimeout(timer)
    }
    const hooks: Partial<Record<(typeof HOOK_NAMES)[number], AnyHook>> = {}
    for (const hook of HOOK_NAMES) {
      const value = ns[hook]
      if (value === undefined) continue
      if (typeof value !== 'function') return { problem: `the plugin ${file} exports ${hook} as ${describe(value)}; it must be a function` }
      hooks[hook] = value as AnyHook
    }
    if (Object.keys(hooks).length === 0) {
      const hint = 'default' in ns && Object.keys(ns).length === 1
        ? ' (it looks like a CommonJS module: write an ES module, .mjs or .js under "type": "module", with export function onRequest(ctx) {...})'
        : ''
      return { problem: `the plugin ${file} exports none of onRequest, onResponse, onLog${hint}` }
    }
    let validate: ValidateFunction | null = null
    const schema = ns['configSchema'] as PluginModule['configSchema'] | undefined
    if (schema !== undefined) {
      if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) {
        return { problem: `the plugin ${file} exports configSchema as ${describe(schema)}; it must be a JSON Schema object` }
      }
      try {
        this.#ajv ??= new (await import('ajv')).Ajv({ allErrors: true, strict: false })
        validate = this.#ajv.compile(schema)
      } catch (err) {
        return { problem: `the plugin ${file} exports a configSchema that is not a valid JSON Schema: ${firstLine(err)}` }
      }
    }
    const name = basename(file, extname(file))
    return {
      loaded: Object.freeze({ file, url, version, name, onRequest: hooks.onRequest ?? null, onResponse: hooks.onResponse ?? null, onLog: hooks.onLog ?? null, validate }),
    }
  }
}

/** A plugin file's content version: the first 16 hex digits of its SHA-256 (the `?v=` of its import URL). */
export function contentVersion(content: Buffer): string {
  return createHash('sha256').update(content).digest('hex').slice(0, 16)
}

/** One ajv error as a config issue: located at the offending value (or key), the path in routes.yaml terms. */
function configIssue(e: ErrorObject, base: PathSegment[], where: (path: readonly PathSegment[], at?: IssueTarget) => string): ConfigIssue {
  const path: PathSegment[] = [...base]
  for (const seg of e.instancePath.split('/').slice(1)) {
    const s = seg.replace(/~1/g, '/').replace(/~0/g, '~')
    path.push(/^\d+$/.test(s) ? Number(s) : s)
  }
  let at: IssueTarget = 'value'
  let message = e.message ?? 'is invalid'
  if (e.keyword === 'additionalProperties') {
    const extra = String((e.params as { additionalProperty?: unknown }).additionalProperty)
    path.push(extra)
    at = 'key'
    message = 'is not a setting of this plugin (its configSchema does not list it)'
  } else if (e.keyword === 'required') {
    at = path.length === base.length ? 'key' : 'value'
    message = `${message} (the plugin's configSchema requires it)`
  } else if (e.keyword === 'enum') {
    message = `must be one of ${JSON.stringify((e.params as { allowedValues?: unknown }).allowedValues)}`
  }
  return { where: where(path, at), path: formatPath(path), message, severity: 'error' }
}

function describe(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'a list' : `a ${typeof value}`
}

function firstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  return message.split('\n')[0] ?? message
}

/**
 * The process's plugin modules: one, like Node's ES module cache it mirrors. The lifecycle prepares each
 * config with it before applying it; the table build reads it (src/table/compiled-route.ts).
 */
export const pluginModules = new PluginModules()
