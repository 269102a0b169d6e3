// Where the etcd commands find etcd (README.md "Running several instances against etcd"): flags first, then
// TOLLGATE_ETCD_* variables, then the `etcd:` section of the config file, then the defaults of that section.
import { existsSync } from 'node:fs'
import { ConfigError, formatIssue } from '../../errors.js'
import type { EtcdConnectionSettings } from '../client.js'
import { loadConfigFile } from '../../config/load.js'
import { Etcd } from '../../config/schema.js'

export interface EtcdFlags {
  readonly config?: string | undefined
  readonly endpoints?: string | undefined
  readonly prefix?: string | undefined
  readonly username?: string | undefined
  readonly password?: string | undefined
  readonly ca?: string | undefined
  readonly cert?: string | undefined
  readonly key?: string | undefined
}

/** parseArgs options of the flags above, shared by every etcd command. */
export const ETCD_FLAG_OPTIONS = {
  config: { type: 'string' },
  endpoints: { type: 'string' },
  prefix: { type: 'string' },
  username: { type: 'string' },
  password: { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
} as const

export interface EtcdTarget {
  readonly connection: EtcdConnectionSettings
  readonly prefix: string
  /** `http://127.0.0.1:2379 prefix /tollgate`, for messages. */
  readonly describe: string
}

const DEFAULT_ENDPOINTS: readonly string[] = Etcd.properties.endpoints.default
const DEFAULT_PREFIX: string = Etcd.properties.prefix.default

/**
 * Resolves the etcd to talk to. `file` is the config file whose `etcd:` section gives the defaults
 * (--config, else TOLLGATE_CONFIG, else ./routes.yaml when it exists). Throws Error with a readable message.
 */
export function resolveEtcdTarget(flags: EtcdFlags, env: NodeJS.ProcessEnv, file?: string): EtcdTarget {
  const path = flags.config ?? file ?? env['TOLLGATE_CONFIG'] ?? (existsSync('routes.yaml') ? 'routes.yaml' : undefined)
  let section: { endpoints?: readonly string[]; prefix?: string; username?: string; password?: string; tls?: EtcdConnectionSettings['tls'] } = {}
  if (path !== undefined) {
    try {
      section = loadConfigFile(path, env).config.etcd ?? {}
    } catch (err) {
      if (err instanceof ConfigError) throw new Error(`${path} is invalid:\n${err.issues.filter((i) => i.severity === 'error').map(formatIssue).join('\n')}`)
      throw err
    }
  }
  const pick = (flag: string | undefined, variable: string): string | undefined => {
    if (flag !== undefined) return flag
    const v = env[variable]
    return v === undefined || v === '' ? undefined : v
  }
  const endpointsText = pick(flags.endpoints, 'TOLLGATE_ETCD_ENDPOINTS')
  const endpoints = endpointsText === undefined ? section.endpoints ?? DEFAULT_ENDPOINTS : endpointsText.split(',').map((e) => e.trim()).filter((e) => e !== '')
  for (const e of endpoints) {
    if (!/^https?:\/\//.test(e)) throw new Error(`etcd endpoint ${JSON.stringify(e)}: expected http://host:port or https://host:port`)
  }
  if (endpoints.length === 0) throw new Error('no etcd endpoints given')
  const prefix = pick(flags.prefix, 'TOLLGATE_ETCD_PREFIX') ?? section.prefix ?? DEFAULT_PREFIX
  if (!prefix.startsWith('/')) throw new Error(`etcd prefix ${JSON.stringify(prefix)}: must start with /`)
  const username = pick(flags.username, 'TOLLGATE_ETCD_USERNAME') ?? section.username
  const password = pick(flags.password, 'TOLLGATE_ETCD_PASSWORD') ?? section.password
  const tls = {
    ca: flags.ca ?? section.tls?.ca,
    cert: flags.cert ?? section.tls?.cert,
    key: flags.key ?? section.tls?.key,
  }
  const hasTls = tls.ca !== undefined || tls.cert !== undefined || tls.key !== undefined
  return {
    connection: { endpoints, username, password, tls: hasTls ? tls : undefined },
    prefix,
    describe: `etcd ${endpoints.join(',')} prefix ${prefix}`,
  }
}
