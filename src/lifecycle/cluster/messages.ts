// The IPC protocol between the cluster primary and its workers. A worker's first message is `hello`, sent
// once its message handler exists: messages that reach a process before that are lost, so the primary never
// sends before it.
//
//   worker -> primary: hello | ready {revision} | applied {revision, result} | metrics {id, metrics} | route-totals {id, totals}
//   primary -> worker: config {config, origin, revision} | health {reports} | shutdown | metrics {id} | route-totals {id}
//
// `route-totals` asks for each route's request and 5xx counts, for /status (the status page's rates): read
// from the worker's metric cells, much cheaper than its whole registry as JSON.
//
// `health` carries active probe results: the primary probes once per instance (README "Health checks") and
// sends each change of a target's state, and to a worker that says hello all states after its config.
//
// `config` carries the Config the primary validated (and merged with etcd): plain frozen data, sent as JSON
// by node:cluster. Workers never read or parse routes.yaml; `revision` is that of the file text the config
// came from, which the worker reports back for /status.
import type { Worker } from 'node:cluster'
import type { RouteTotalsById } from '../../admin/status.js'
import type { Config } from '../../config/schema.js'
import type { ActiveReport } from '../../upstream/health/active.js'
import type { ApplyResult, ConfigOrigin } from '../config-applier.js'

export interface ConfigMessage {
  readonly type: 'tollgate:config'
  readonly config: Config
  readonly origin: ConfigOrigin
  readonly revision: string
}

export type ToWorker =
  | ConfigMessage
  | { readonly type: 'tollgate:health'; readonly reports: readonly ActiveReport[] }
  | { readonly type: 'tollgate:shutdown' }
  | { readonly type: 'tollgate:metrics'; readonly id: number }
  | { readonly type: 'tollgate:route-totals'; readonly id: number }

export type ToPrimary =
  | { readonly type: 'tollgate:hello' }
  | { readonly type: 'tollgate:ready'; readonly revision: string }
  | { readonly type: 'tollgate:applied'; readonly revision: string; readonly result: ApplyResult }
  | { readonly type: 'tollgate:metrics'; readonly id: number; readonly metrics: object[] }
  | { readonly type: 'tollgate:route-totals'; readonly id: number; readonly totals: RouteTotalsById }

/** One of ours (other IPC users, e.g. node:cluster itself, send their own shapes). */
function isOurs(m: unknown): m is { readonly type: string } {
  if (typeof m !== 'object' || m === null) return false
  const type = (m as { type?: unknown }).type
  return typeof type === 'string' && type.startsWith('tollgate:')
}

/** Narrows a message from the primary; null when it is not one of ours. */
export function toWorker(m: unknown): ToWorker | null {
  return isOurs(m) ? (m as ToWorker) : null
}

/** Narrows a message from a worker; null when it is not one of ours. */
export function toPrimary(m: unknown): ToPrimary | null {
  return isOurs(m) ? (m as ToPrimary) : null
}

/** false when the worker's channel is gone (it is dying): the caller decides what that means. */
/**
 * False when the worker is already gone. A worker SIGKILLed a moment ago still looks connected until its
 * exit is seen; the write then fails with EPIPE, which without a callback is an `error` event on the Worker
 * and, with no listener, took the primary down. The callback takes it, and `failed` lets a caller waiting
 * for an answer stop waiting.
 */
export function sendToWorker(worker: Worker, message: ToWorker, failed?: () => void): boolean {
  if (!worker.isConnected()) return false
  worker.send(message, (err: Error | null) => {
    if (err !== null) failed?.()
  })
  return true
}

/** The same for the worker's side: a primary that died mid-send is not an uncaught `error`. */
export function sendToPrimary(message: ToPrimary): void {
  if (process.connected) process.send?.(message, undefined, undefined, () => undefined)
}

/** The config as it arrived over IPC, frozen again (JSON made a fresh, mutable copy). */
export function frozen<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) frozen(child)
    Object.freeze(value)
  }
  return value
}
