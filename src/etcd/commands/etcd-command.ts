// tollgate etcd put F [--prune] [--dry-run]   tollgate etcd get   (README.md "Command line")
//
// put: validate F as a whole, read the prefix at revision R, print the diff, then write every change in
// ONE transaction guarded by R: it fails if any route or upstream key changed after R (a range compare on
// mod_revision < R + 1, plus mod_revision == seen for each key it overwrites or deletes, which catches a
// concurrent delete), so a concurrent edit is never overwritten silently.
// get: the routes and upstreams stored in etcd as routes.yaml text that `validate` accepts and `put`
// takes back unchanged (values printed as stored; invalid ones left out, with a comment and a warning).
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import type { ICompare, IRequestOp } from 'etcd3'
import { Document } from 'yaml'
import { ConfigError, formatIssue } from '../../errors.js'
import { createEtcdClient, describeEtcdError, prefixEnd, readPrefix, type KeyValue } from '../client.js'
import { etcdWhere, keyPrefix, parseItem, parseItemKey } from '../keys.js'
import { loadConfigText } from '../../config/load.js'
import { parseYamlSource } from '../../config/yaml-source.js'
import { desiredItems, formatPlan, planPut, type Plan } from './etcd-diff.js'
import { ETCD_FLAG_OPTIONS, resolveEtcdTarget, type EtcdTarget } from './etcd-connection.js'

export interface CommandIo {
  stdout(text: string): void
  stderr(text: string): void
  readonly env: NodeJS.ProcessEnv
}

export const ETCD_USAGE = `usage:
  tollgate etcd put F [--prune] [--dry-run]   validate F, show the diff against etcd, write it in one transaction
  tollgate etcd get                          print the routes and upstreams stored in etcd as YAML
etcd location (default: the etcd: section of F, of --config, or of ./routes.yaml):
  --endpoints http://host:2379[,...]  --prefix /tollgate  --username U  --password P  --ca F --cert F --key F
  (or TOLLGATE_ETCD_ENDPOINTS, TOLLGATE_ETCD_PREFIX, TOLLGATE_ETCD_USERNAME, TOLLGATE_ETCD_PASSWORD)`

export async function runEtcdCommand(args: readonly string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = args
  switch (sub) {
    case 'put': return runPut(rest, io)
    case 'get': return runGet(rest, io)
    case undefined: case 'help': case '--help': case '-h':
      io.stdout(ETCD_USAGE + '\n')
      return sub === undefined ? 2 : 0
    default:
      io.stderr(`tollgate etcd: unknown command ${JSON.stringify(sub)}\n${ETCD_USAGE}\n`)
      return 2
  }
}

async function runPut(args: readonly string[], io: CommandIo): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: [...args],
      options: { ...ETCD_FLAG_OPTIONS, prune: { type: 'boolean' }, 'dry-run': { type: 'boolean' } },
      allowPositionals: true,
      strict: true,
    })
  } catch (err) {
    io.stderr(`tollgate etcd put: ${(err as Error).message}\n${ETCD_USAGE}\n`)
    return 2
  }
  const file = parsed.positionals[0]
  if (file === undefined || parsed.positionals.length > 1) {
    io.stderr(`tollgate etcd put: give exactly one file\n${ETCD_USAGE}\n`)
    return 2
  }
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    io.stderr(`tollgate etcd put: cannot read ${file}: ${(err as Error).message}\n`)
    return 1
  }
  try {
    loadConfigText(text, file, io.env)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    for (const issue of err.issues.filter((i) => i.severity === 'error')) io.stderr(formatIssue(issue) + '\n')
    io.stderr(`tollgate etcd put: ${file} is invalid; nothing written.\n`)
    return 1
  }
  const raw = parseYamlSource(text, file, io.env).value as { routes?: unknown; upstreams?: unknown } | null
  let target: EtcdTarget
  try {
    target = resolveEtcdTarget(parsed.values, io.env, parsed.values.config === undefined ? file : undefined)
  } catch (err) {
    io.stderr(`tollgate etcd put: ${(err as Error).message}\n`)
    return 2
  }
  const prefix = keyPrefix(target.prefix)
  const desired = desiredItems(target.prefix, raw ?? {})
  let client
  try {
    client = await createEtcdClient(target.connection)
  } catch (err) {
    io.stderr(`tollgate etcd put: ${(err as Error).message}\n`)
    return 1
  }
  try {
    const { revision, entries } = await readPrefix(client, prefix)
    const plan = planPut(target.prefix, desired, entries, revision, parsed.values.prune === true)
    io.stdout(`${target.describe}, revision ${revision}:\n`)
    for (const line of formatPlan(target.prefix, plan)) io.stdout(line + '\n')
    if (parsed.values['dry-run'] === true) {
      io.stdout('dry run: nothing written.\n')
      return 0
    }
    if (plan.changes.length === 0) {
      io.stdout('etcd is up to date; nothing written.\n')
      return 0
    }
    const result = await writePlan(client, prefix, plan)
    if (result.succeeded) {
      io.stdout(`written: ${plan.changes.length} change${plan.changes.length === 1 ? '' : 's'} in one transaction, revision ${result.revision}.\n`)
      return 0
    }
    const moved = await changedSince(client, prefix, entries, revision).catch(() => [])
    io.stderr(`tollgate etcd put: etcd changed since revision ${revision}, which the diff was made against` +
      `${moved.length === 0 ? '' : ` (${moved.slice(0, 10).join(', ')}${moved.length > 10 ? ', ...' : ''})`}; nothing was written. ` +
      'Run the command again to see the new diff.\n')
    return 1
  } catch (err) {
    io.stderr(`tollgate etcd put: ${describePutError(err)}\n`)
    return 1
  } finally {
    client.close()
  }
}

/** A txn with too many operations fails with etcd's own limit; name it. */
function describePutError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  if (/too many operations in txn/i.test(message)) {
    return 'etcd refused the transaction: it allows 128 operations per transaction by default (--max-txn-ops). ' +
      'Put the file in smaller parts, or raise the limit on every etcd member.'
  }
  const text = describeEtcdError(err)
  return `${text}${text.endsWith('.') ? '' : '.'} Nothing was written.`
}

/**
 * Writes a plan in one transaction that succeeds only if no route or upstream key changed after the
 * plan's revision. `prefix` with its trailing slash.
 */
export async function writePlan(client: Awaited<ReturnType<typeof createEtcdClient>>, prefix: string, p: Plan): Promise<{ succeeded: boolean; revision: number }> {
  const guard = (folder: string): ICompare => ({
    target: 'Mod', result: 'Less', key: Buffer.from(prefix + folder), range_end: prefixEnd(prefix + folder), mod_revision: p.revision + 1,
  })
  const compare: ICompare[] = [guard('routes/'), guard('upstreams/')]
  const success: IRequestOp[] = []
  for (const c of p.changes) {
    if (c.op !== 'add') compare.push({ target: 'Mod', result: 'Equal', key: Buffer.from(c.key), mod_revision: c.modRevision })
    if (c.op === 'delete') success.push({ request_delete_range: { key: Buffer.from(c.key) } })
    else success.push({ request_put: { key: Buffer.from(c.key), value: Buffer.from(c.value) } })
  }
  const res = await client.kv.txn({ compare, success, failure: [] })
  return { succeeded: res.succeeded, revision: Number(res.header.revision) }
}

/** Route and upstream keys created, changed or deleted after `revision`. */
async function changedSince(client: Awaited<ReturnType<typeof createEtcdClient>>, prefix: string, before: readonly KeyValue[], revision: number): Promise<string[]> {
  const now = await readPrefix(client, prefix)
  const relevant = (key: string): boolean => {
    const item = parseItemKey(prefix, key)
    return item !== null && item.kind !== 'service'
  }
  const out: string[] = []
  const seen = new Set(now.entries.map((e) => e.key))
  for (const e of now.entries) if (relevant(e.key) && e.modRevision > revision) out.push(`${e.key.slice(prefix.length)} changed`)
  for (const e of before) if (relevant(e.key) && !seen.has(e.key)) out.push(`${e.key.slice(prefix.length)} deleted`)
  return out
}

async function runGet(args: readonly string[], io: CommandIo): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({ args: [...args], options: ETCD_FLAG_OPTIONS, allowPositionals: false, strict: true })
  } catch (err) {
    io.stderr(`tollgate etcd get: ${(err as Error).message}\n${ETCD_USAGE}\n`)
    return 2
  }
  let target: EtcdTarget
  try {
    target = resolveEtcdTarget(parsed.values, io.env)
  } catch (err) {
    io.stderr(`tollgate etcd get: ${(err as Error).message}\n`)
    return 2
  }
  let client
  try {
    client = await createEtcdClient(target.connection)
  } catch (err) {
    io.stderr(`tollgate etcd get: ${(err as Error).message}\n`)
    return 1
  }
  try {
    const { revision, entries } = await readPrefix(client, keyPrefix(target.prefix))
    io.stdout(formatStored(target, revision, entries, (warning) => io.stderr(`tollgate etcd get: ${warning}\n`)))
    return 0
  } catch (err) {
    io.stderr(`tollgate etcd get: ${describeEtcdError(err)}\n`)
    return 1
  } finally {
    client.close()
  }
}

/** routes.yaml text of what etcd holds; `warn` hears about every item left out. */
export function formatStored(target: EtcdTarget, revision: number, entries: readonly KeyValue[], warn: (text: string) => void): string {
  const upstreams: Record<string, unknown> = {}
  const routes: unknown[] = []
  const comments: string[] = []
  for (const e of entries) {
    const item = parseItemKey(target.prefix, e.key)
    if (item === null) continue
    const r = parseItem(item, e.value)
    if (!('parsed' in r)) {
      const text = `${etcdWhere(e.key, e.modRevision)} left out: ${r.reason}`
      warn(text)
      comments.push(`# ${text}`)
      continue
    }
    const value = JSON.parse(e.value) as Record<string, unknown>
    if (item.kind === 'upstream') upstreams[item.name] = value
    else if (item.kind === 'route') {
      const { id: _id, ...rest } = value
      routes.push({ id: item.id, ...rest })
    } else comments.push(`# registered: ${item.upstream}/${item.instance} ${r.parsed.kind === 'service' ? r.parsed.target.url : ''} (${e.key}, under a lease)`)
  }
  const doc = new Document({ upstreams, routes })
  return [`# ${target.describe}, revision ${revision}`, ...comments, doc.toString({ lineWidth: 0 }).trimEnd(), ''].join('\n')
}
