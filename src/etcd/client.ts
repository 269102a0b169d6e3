// etcd connection settings -> an etcd3 client, for the gateway and the etcd commands alike.
//
// etcd3 (gRPC) costs about 28 MB of RSS, so it is imported here only, lazily, when a config has an
// `etcd:` section or an etcd command runs; everything else imports this file's types only.
import { readFileSync } from 'node:fs'
import type { Etcd3, IOptions } from 'etcd3'
import { equalJitterMs } from '../lib/backoff.js'

export type Etcd3Module = typeof import('etcd3')

/** Where etcd is and how to log in: the `etcd:` section of routes.yaml, or the etcd commands' flags. */
export interface EtcdConnectionSettings {
  readonly endpoints: readonly string[]
  readonly username?: string | undefined
  readonly password?: string | undefined
  readonly tls?: { readonly ca?: string | undefined; readonly cert?: string | undefined; readonly key?: string | undefined } | undefined
}

export interface EtcdClientTuning {
  /** Deadline of every unary call (streams have none). Default 5 s. */
  readonly callTimeoutMs?: number
  /** Largest response accepted, e.g. one page of a full read. Default 256 MiB. */
  readonly maxReceiveBytes?: number
}

let loading: Promise<Etcd3Module> | null = null

/** The etcd3 module, imported on first use. */
export function loadEtcd3(): Promise<Etcd3Module> {
  loading ??= import('etcd3')
  return loading
}

// grpc-js createSsl() takes null for "the system's root certificates"; etcd3's type says Buffer.
const SYSTEM_ROOTS = null as unknown as Buffer

/** Client options; reads the TLS files (a missing file throws with its path). */
export function etcdClientOptions(settings: EtcdConnectionSettings, tuning: EtcdClientTuning = {}): IOptions {
  const callTimeoutMs = tuning.callTimeoutMs ?? 5_000
  const options: IOptions = {
    hosts: [...settings.endpoints],
    dialTimeout: callTimeoutMs,
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
    grpcOptions: {
      // A dead connection (etcd frozen, a silent network drop) fails the watch stream within ~15 s.
      // etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time).
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      // A new client gets new connections, never the stuck one an older client had.
      'grpc.use_local_subchannel_pool': 1,
      'grpc.max_receive_message_length': tuning.maxReceiveBytes ?? 256 * 1024 * 1024,
    },
    faultHandling: { watchBackoff: jitteredBackoff(100, 2_000) },
  }
  const tls = settings.tls
  if (tls !== undefined && (tls.ca !== undefined || tls.cert !== undefined || tls.key !== undefined)) {
    if ((tls.cert === undefined) !== (tls.key === undefined)) {
      throw new Error('etcd.tls: cert and key go together; give both or neither')
    }
    options.credentials = {
      rootCertificate: tls.ca === undefined ? SYSTEM_ROOTS : readPem(tls.ca, 'etcd.tls.ca'),
      ...(tls.cert === undefined ? {} : { certChain: readPem(tls.cert, 'etcd.tls.cert') }),
      ...(tls.key === undefined ? {} : { privateKey: readPem(tls.key, 'etcd.tls.key') }),
    }
  }
  if (settings.username !== undefined && settings.username !== '') {
    options.auth = {
      username: settings.username,
      password: settings.password ?? '',
      callOptions: () => ({ deadline: Date.now() + callTimeoutMs }),
    }
  }
  return options
}

/** One key of a read: value as UTF-8 text. */
export interface KeyValue {
  readonly key: string
  readonly value: string
  readonly modRevision: number
}

/** A full read of a prefix: its keys at one revision, and which etcd cluster answered. */
export interface PrefixRead {
  readonly revision: number
  /** etcd's `header.cluster_id` (a uint64 in decimal): a different one is a different etcd cluster. */
  readonly clusterId: string
  readonly entries: KeyValue[]
}

/**
 * Every key under `prefix` at one revision (the first page's), `pageSize` keys per request, so a large
 * prefix never has to fit in one response (etcd's default request limit is 1.5 MiB: etcd.io dev guide,
 * "System limits").
 */
export async function readPrefix(client: Etcd3, prefix: string, pageSize = 256): Promise<PrefixRead> {
  const end = prefixEnd(prefix)
  const entries: KeyValue[] = []
  let from: Buffer = Buffer.from(prefix)
  let revision: number | null = null
  let clusterId = ''
  for (;;) {
    let range = client.getAll().inRange({ start: from, end }).limit(pageSize)
    if (revision !== null) range = range.revision(revision)
    const res = await range.exec()
    if (revision === null) {
      revision = Number(res.header.revision)
      clusterId = String(res.header.cluster_id)
    }
    for (const kv of res.kvs) entries.push({ key: kv.key.toString(), value: kv.value.toString(), modRevision: Number(kv.mod_revision) })
    const last = res.kvs[res.kvs.length - 1]
    if (!res.more || last === undefined) break
    from = Buffer.concat([last.key, Buffer.from([0])])
  }
  return { revision, clusterId, entries }
}

/** The first key after every key that starts with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix)
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1
      return end.subarray(0, i + 1)
    }
  }
  return Buffer.from([0])
}

export async function createEtcdClient(settings: EtcdConnectionSettings, tuning: EtcdClientTuning = {}): Promise<Etcd3> {
  const { Etcd3 } = await loadEtcd3()
  return new Etcd3(etcdClientOptions(settings, tuning))
}

function readPem(path: string, field: string): Buffer {
  try {
    return readFileSync(path)
  } catch (err) {
    throw new Error(`${field}: cannot read ${path}: ${(err as Error).message}`, { cause: err })
  }
}

type WatchBackoff = NonNullable<NonNullable<IOptions['faultHandling']>['watchBackoff']>

/** Exponential back-off with jitter, for etcd3's watch reconnects (its default grows to 30 s). */
function jitteredBackoff(baseMs: number, capMs: number, attempt = 0): WatchBackoff {
  return {
    duration: Math.round(equalJitterMs(attempt, baseMs, capMs)),
    next: () => jitteredBackoff(baseMs, capMs, attempt + 1),
  }
}

/** A readable message for an etcd client error, without the gRPC trace: what failed and what to do. */
export function describeEtcdError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  const name = err instanceof Error ? err.name : ''
  if (/request is too large|RESOURCE_EXHAUSTED|larger than max/i.test(message) || name === 'GRPCResourceExhaustedError') {
    return 'etcd refused the request as too large: etcd accepts requests up to 1.5 MiB by default (--max-request-bytes). ' +
      'Split large items, or raise the limit on every etcd member.'
  }
  if (/authentication failed|invalid auth token|user name is empty|auth: /i.test(message) || name === 'EtcdAuthenticationFailedError') {
    return `etcd authentication failed: ${firstLine(message)}. Check etcd.username and etcd.password.`
  }
  if (/permission denied/i.test(message) || name === 'EtcdPermissionDeniedError') {
    return `etcd denied the request: ${firstLine(message)}. The etcd user needs read access to the prefix (and write access for etcd put and register).`
  }
  if (/deadline exceeded/i.test(message) || name === 'GRPCDeadlineExceededError') return 'etcd did not answer in time'
  const refused = /ECONNREFUSED ([^\s.]+(?:\.[^\s.]+)*:\d+)/.exec(message)
  if (refused !== null) return `etcd is unreachable: connection refused by ${refused[1]}`
  if (/Broken circuit|circuit.*open/i.test(message)) return 'etcd is unreachable: every endpoint failed recently (retrying)'
  if (/UNAVAILABLE|No connection established|connect/i.test(message)) return `etcd is unreachable: ${firstLine(message).replace(/^\d+ UNAVAILABLE: /, '')}`
  return firstLine(message)
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text
}
