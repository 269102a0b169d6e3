// One watch of a prefix on one etcd3 client, with its watchdog, until it has to be replaced.
//
// - It starts at the caller's revision + 1 and keeps that revision pinned into the etcd3 watcher after
//   every event, connect and disconnect: etcd3 itself moves it to the header revision of a watch's
//   `created` answer, which would skip the events still to come if the stream broke right then. So a
//   reconnect (etcd3 does those itself) resumes exactly after what was applied, never from a guess.
// - A watch etcd cancels (typically its revision was compacted away) is dropped by etcd3 with an `error`
//   event, an uncaught exception without a listener (microsoft/etcd3 src/watch.ts; etcd-io/etcd#8668): that
//   ends this watch.
// - Watchdog: every watchdogMs a cheap read of the prefix (key count and newest mod revision) with a short
//   deadline. No answer (etcd frozen, network black hole) ends the watch; so does a watch that twice in a
//   row fails to deliver what the read shows (a silent, stuck stream: microsoft/etcd3#72, etcd#8980).
//   An answer from another etcd (another cluster id, or a revision lower than ours when the read was
//   sent: etcd replaced, wiped or restored under the same address) ends it too; the caller reads again.
// - Every handler runs inside try/catch: etcd3 rethrows listener errors as uncaught exceptions.
import type { Etcd3, IWatchResponse, Watcher } from 'etcd3'
import { describeEtcdError } from './client.js'

export interface WatchCallbacks {
  /** The revision the caller's state reflects: the watch resumes after it. */
  revision(): number
  /** Keys the caller knows under the prefix, compared with etcd's count by the watchdog. */
  keyCount(): number
  /** A watch response (events or a progress notification). */
  onResponse(res: IWatchResponse): void
  /** The stream broke; etcd3 reconnects on its own. */
  onDisconnected(err: Error): void
  /** The stream is back after a break. */
  onReconnected(): void
  /** The watchdog read failed (the watch ends right after). */
  onProbeFailed(err: unknown): void
  /** Why an answer with this cluster id and revision comes from another etcd than ours, or null. */
  replacedBy(clusterId: string, revision: number, revisionBefore: number): string | null
}

export interface WatchOptions {
  readonly watchdogMs: number
  readonly probeTimeoutMs: number
}

export interface PrefixWatch {
  /** Resolves with the reason the watch ended. */
  readonly ended: Promise<string>
  end(reason: string): void
}

export function watchPrefix(client: Etcd3, prefix: string, options: WatchOptions, callbacks: WatchCallbacks): PrefixWatch {
  let ended = false
  let disconnected = false
  let probing = false
  let dataSinceProbe = false
  let behindStrikes = 0
  let resolveEnded!: (reason: string) => void
  const endedPromise = new Promise<string>((r) => { resolveEnded = r })
  const watcher: Watcher = client.watch().prefix(prefix).startRevision(String(callbacks.revision() + 1)).watcher()
  const pin = (): void => {
    watcher.request.start_revision = String(callbacks.revision() + 1)
  }
  const guard = (what: string, f: () => void): void => {
    try {
      f()
    } catch (err) {
      end(`failed to handle ${what}: ${(err as Error).message}`)
    }
  }
  const onData = (res: IWatchResponse): void => guard('a watch response', () => {
    dataSinceProbe = true
    callbacks.onResponse(res)
    pin()
  })
  const onConnected = (): void => guard('a reconnect', () => {
    pin()
    if (!disconnected) return
    disconnected = false
    callbacks.onReconnected()
  })
  const onDisconnected = (err: Error): void => guard('a disconnect', () => {
    pin()
    disconnected = true
    callbacks.onDisconnected(err)
  })
  const onError = (err: Error): void => {
    end(`the watch was canceled by etcd (${describeEtcdError(err)}), after a compaction or an etcd error`)
  }
  const end = (reason: string): void => {
    if (ended) return
    ended = true
    clearInterval(watchdog)
    watcher.off('data', onData).off('connected', onConnected).off('disconnected', onDisconnected).off('error', onError)
    // etcd3 may still report on this watcher; an `error` without a listener would be uncaught.
    watcher.on('error', () => undefined)
    // etcd3 keeps a canceled watcher until its stream answers: never wait on a stream that may be dead.
    watcher.cancel().catch(() => undefined)
    resolveEnded(reason)
  }
  watcher.on('data', onData).on('connected', onConnected).on('disconnected', onDisconnected).on('error', onError)

  const probe = async (): Promise<{ count: number; newestModRevision: number; revision: number; clusterId: string }> => {
    const res = await client.getAll().prefix(prefix).sort('Mod', 'Descend').limit(1)
      .options({ deadline: Date.now() + options.probeTimeoutMs }).exec()
    return { count: Number(res.count), newestModRevision: Number(res.kvs[0]?.mod_revision ?? 0), revision: Number(res.header.revision), clusterId: String(res.header.cluster_id) }
  }
  const watchdog = setInterval(() => {
    if (probing || ended) return
    probing = true
    const before = callbacks.revision()
    probe().then((seen) => {
      if (ended) return
      const replaced = callbacks.replacedBy(seen.clusterId, seen.revision, before)
      if (replaced !== null) return end(replaced)
      const revision = callbacks.revision()
      const behind = seen.newestModRevision > revision || seen.count !== callbacks.keyCount()
      behindStrikes = behind && !dataSinceProbe ? behindStrikes + 1 : 0
      dataSinceProbe = false
      if (behindStrikes >= 2) {
        end(`the watch made no progress: etcd shows ${seen.count} keys changed up to revision ${seen.newestModRevision}, the watch delivered up to revision ${revision}`)
      }
    }, (err: unknown) => {
      if (ended) return
      callbacks.onProbeFailed(err)
      end(`etcd did not answer the watchdog read (${describeEtcdError(err)})`)
    }).finally(() => { probing = false })
  }, options.watchdogMs)
  watchdog.unref()
  return { ended: endedPromise, end }
}
