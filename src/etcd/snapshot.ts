// The last good etcd config on local disk (`etcd.snapshotFile`, README.md "Running several instances against
// etcd"), so a gateway can start while etcd is down. Written atomically after each applied change: a temp
// file in the same directory, fsynced, renamed over the old one, so a crash leaves the old snapshot or the
// new one, never half of one.
//
// It is for starting while etcd is down, nothing more: it serves until etcd answers the first full read,
// and that read replaces it whatever its revision (src/etcd/source.ts). `clusterId` records which etcd
// cluster it came from (absent in snapshots written before it was kept).
import { mkdirSync, readFileSync } from 'node:fs'
import { mkdir, open, rename, rm } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { EtcdEntry } from './items.js'

export interface EtcdSnapshot {
  readonly version: 1
  readonly prefix: string
  readonly revision: number
  /** etcd's cluster id of the read it reflects; null when no live read was applied yet. */
  readonly clusterId?: string | null
  readonly writtenAt: string
  readonly items: readonly EtcdEntry[]
}

export type SnapshotRead =
  | { readonly kind: 'missing' }
  | { readonly kind: 'loaded'; readonly snapshot: EtcdSnapshot }
  | { readonly kind: 'unusable'; readonly reason: string }

/** Reads a snapshot written for `prefix`; a file for another prefix or a broken one is unusable. */
export function readEtcdSnapshot(path: string, prefix: string): SnapshotRead {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' }
    return { kind: 'unusable', reason: `cannot read ${path}: ${(err as Error).message}` }
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    return { kind: 'unusable', reason: `${path} is not valid JSON: ${(err as Error).message}` }
  }
  if (!isSnapshot(value)) return { kind: 'unusable', reason: `${path} is not a Tollgate etcd snapshot (version 1)` }
  if (value.prefix !== prefix) return { kind: 'unusable', reason: `${path} holds prefix ${value.prefix}, not ${prefix}` }
  return { kind: 'loaded', snapshot: value }
}

function isSnapshot(v: unknown): v is EtcdSnapshot {
  if (typeof v !== 'object' || v === null) return false
  const s = v as Record<string, unknown>
  return s['version'] === 1 && typeof s['prefix'] === 'string' && typeof s['revision'] === 'number' && Array.isArray(s['items']) &&
    (s['clusterId'] === undefined || s['clusterId'] === null || typeof s['clusterId'] === 'string') &&
    s['items'].every((i: unknown) => typeof i === 'object' && i !== null && typeof (i as EtcdEntry).key === 'string' &&
      typeof (i as EtcdEntry).value === 'string' && typeof (i as EtcdEntry).modRevision === 'number')
}

/**
 * Writes snapshots one at a time; a snapshot asked for while one is being written replaces any other
 * waiting one, so a burst of changes costs at most two writes.
 */
export class SnapshotWriter {
  readonly path: string
  writtenAt: Date | null = null
  lastError: string | null = null
  readonly #onError: (message: string) => void
  #pending: EtcdSnapshot | null = null
  #running: Promise<void> | null = null
  #seq = 0

  /** `onError` hears each new problem once (not every failed write). */
  constructor(path: string, onError: (message: string) => void = () => undefined) {
    this.path = path
    this.#onError = onError
  }

  /** Checks early that the directory can be made. */
  prepare(): void {
    try {
      mkdirSync(dirname(this.path), { recursive: true })
    } catch (err) {
      this.#fail(`cannot create ${dirname(this.path)}: ${(err as Error).message}`)
    }
  }

  #fail(message: string): void {
    if (message !== this.lastError) this.#onError(message)
    this.lastError = message
  }

  write(snapshot: EtcdSnapshot): void {
    this.#pending = snapshot
    this.#running ??= this.#drain()
  }

  /** Resolves when nothing is waiting to be written. */
  async flush(): Promise<void> {
    while (this.#running !== null) await this.#running
  }

  async #drain(): Promise<void> {
    try {
      while (this.#pending !== null) {
        const snapshot = this.#pending
        this.#pending = null
        try {
          await this.#writeAtomically(JSON.stringify(snapshot, null, 1) + '\n')
          this.writtenAt = new Date()
          this.lastError = null
        } catch (err) {
          this.#fail((err as Error).message)
        }
      }
    } finally {
      this.#running = null
    }
  }

  async #writeAtomically(text: string): Promise<void> {
    try {
      await mkdir(dirname(this.path), { recursive: true })
    } catch (err) {
      throw new Error(`cannot create ${dirname(this.path)}: ${(err as Error).message}`, { cause: err })
    }
    const tmp = `${this.path}.${process.pid}.${++this.#seq}.tmp`
    try {
      const handle = await open(tmp, 'w', 0o600)
      try {
        await handle.writeFile(text)
        await handle.sync()
      } finally {
        await handle.close()
      }
      await rename(tmp, this.path)
    } catch (err) {
      await rm(tmp, { force: true })
      throw new Error(`cannot write ${this.path}: ${(err as Error).message}`, { cause: err })
    }
  }
}
