// routes.yaml as a config source: the text last applied, its revision, and what the last rejected reload
// said. Reading and validating happen here; building and swapping the table is the caller's job.
// The files of `tls:` are part of the config (README "TLS"): the revision covers their contents too, so a
// renewed certificate under an unchanged routes.yaml is a change, and a bad one is rejected once. So are the
// plugin files (README "Plugins"), by their content version.
import { createHash } from 'node:crypto'
import { ConfigError, type ConfigIssue } from '../errors.js'
import { readFileSync } from 'node:fs'
import { loadConfigText, readConfigText, type LoadResult } from '../config/load.js'
import type { Config } from '../config/schema.js'
import { contentVersion, pluginModules } from '../policy/plugins/plugin-modules.js'

export type ReloadOutcome =
  | { readonly kind: 'unchanged'; readonly revision: string }
  | { readonly kind: 'loaded'; readonly result: LoadResult; readonly text: string; readonly revision: string }
  | { readonly kind: 'rejected'; readonly issues: readonly ConfigIssue[]; readonly revision: string | null }

export class FileConfigSource {
  readonly path: string
  readonly env: NodeJS.ProcessEnv
  revision = ''
  text = ''
  appliedAt: Date | null = null
  rejected: readonly ConfigIssue[] = []
  rejectedAt: Date | null = null
  /** Revision of the rejected text (null when the file could not be read). */
  rejectedRevision: string | null = null
  current: LoadResult | null = null

  constructor(path: string, env: NodeJS.ProcessEnv) {
    this.path = path
    this.env = env
  }

  /** Reload: unchanged content is a no-op; an invalid file is rejected and the current config stays. */
  reload(): ReloadOutcome {
    let text: string
    try {
      text = readConfigText(this.path)
    } catch (err) {
      if (err instanceof ConfigError) return this.reject([...err.issues], null)
      throw err
    }
    // The tls and plugin files named by the config in force: if the text changed, the revision differs anyway.
    const revision = revisionOf(text, [
      ...this.tlsFiles().map((file): [string, string] => [file, readOrEmpty(file)]),
      ...this.pluginFiles().map((file): [string, string] => [file, versionOrEmpty(file)]),
    ])
    if (revision === this.revision) {
      // Back to the text in force (e.g. a bad edit was undone): nothing to apply, nothing rejected any more.
      this.clearRejection()
      return { kind: 'unchanged', revision }
    }
    // The same bad text seen again (the stat poll and inotify both report one save; an editor saves twice):
    // it was logged and counted once already.
    if (revision === this.rejectedRevision) return { kind: 'unchanged', revision }
    try {
      const result = loadConfigText(text, this.path, this.env)
      return { kind: 'loaded', result, text, revision }
    } catch (err) {
      if (err instanceof ConfigError) return this.reject(err.issues.filter((i) => i.severity === 'error'), revision)
      return this.reject([{ where: this.path, path: '', message: (err as Error).message, severity: 'error' }], revision)
    }
  }

  markApplied(text: string, result: LoadResult): void {
    this.text = text
    this.revision = revisionOf(text, [...tlsContents(result.config), ...pluginVersions(result.config)])
    this.current = result
    this.appliedAt = new Date()
    this.clearRejection()
  }

  /** The files of the tls: section in force (certificates, keys, client CA), absolute. */
  tlsFiles(): string[] {
    return tlsContents(this.current?.config).map(([file]) => file)
  }

  /** The plugin files of the config in force, absolute (README "Plugins": a changed plugin is a reload). */
  pluginFiles(): string[] {
    return pluginVersions(this.current?.config).map(([file]) => file)
  }

  clearRejection(): void {
    this.rejected = []
    this.rejectedAt = null
    this.rejectedRevision = null
  }

  reject(issues: readonly ConfigIssue[], revision: string | null): ReloadOutcome {
    this.rejected = issues
    this.rejectedAt = new Date()
    this.rejectedRevision = revision
    return { kind: 'rejected', issues, revision }
  }
}

/** The revision of routes.yaml text (and of the tls files it names, as [path, content] pairs, when it has any). */
export function revisionOf(text: string, files: ReadonlyArray<readonly [string, string]> = []): string {
  const hash = createHash('sha256').update(text)
  for (const [file, content] of files) hash.update('\0').update(file).update('\0').update(content)
  return hash.digest('hex').slice(0, 12)
}

/** [path, PEM] of every file of `tls:` and of the upstreams' `tls:` as loaded. */
function tlsContents(config: Config | undefined): Array<[string, string]> {
  if (config === undefined) return []
  const out: Array<[string, string]> = []
  const tls = config.tls
  if (tls !== undefined) {
    for (const c of tls.certificates) out.push([c.cert, c.certPem], [c.key, c.keyPem])
    if (tls.clientAuth !== undefined) out.push([tls.clientAuth.ca, tls.clientAuth.caPem])
  }
  // Upstream CA and client certificate files: a change is a reload, which gives the targets new pools.
  for (const upstream of Object.values(config.upstreams)) {
    const t = upstream.tls
    if (t === undefined) continue
    if (t.ca !== null && t.caPem !== null) out.push([t.ca, t.caPem])
    if (t.cert !== null && t.certPem !== null) out.push([t.cert, t.certPem])
    if (t.key !== null && t.keyPem !== null) out.push([t.key, t.keyPem])
  }
  return out
}

/** [path, content version] of every plugin file, as the plugin modules in force were imported. */
function pluginVersions(config: Config | undefined): Array<[string, string]> {
  const out: Array<[string, string]> = []
  const seen = new Set<string>()
  for (const route of config?.routes ?? []) {
    for (const plugin of route.plugins ?? []) {
      if (seen.has(plugin.module)) continue
      seen.add(plugin.module)
      out.push([plugin.module, pluginModules.versionOf(plugin.module)])
    }
  }
  return out
}

function versionOrEmpty(file: string): string {
  try {
    return contentVersion(readFileSync(file))
  } catch {
    return '' // unreadable now: a change; the load that follows says why
  }
}

function readOrEmpty(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return '' // unreadable now: a change; the load that follows says why
  }
}
