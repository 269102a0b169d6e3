// Shared by the RedisStore tests: a sink that records answers, limits with their own key prefixes, a store
// opened on a real Redis.
import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { resolve } from 'node:path'
import { onTestFinished } from 'vitest'
import type { StepContext } from '../../../src/http/request-step.js'
import { Algorithm, type ClusterDecisionSink, type ClusterLimit } from '../../../src/policy/ratelimit/cluster-store.js'
import { RedisStore, type RedisStoreSettings } from '../../../src/policy/ratelimit/redis-store.js'
import type { RedisServer } from '../../helpers/redis.js'

export interface Answer {
  readonly ok: boolean
  readonly allowed: boolean
  readonly remaining: number
  readonly resetMs: number
  readonly retryAfterMs: number
}

/** The request the store must hand back: the store treats it as opaque, so a tagged object stands in. */
export function ctxOf(i: number): StepContext {
  return { i } as unknown as StepContext
}
function indexOf(ctx: StepContext): number {
  return (ctx as unknown as { i: number }).i
}

/** A real sink: records every answer and checks that each decision is answered exactly once. */
export class Recorder implements ClusterDecisionSink {
  readonly answers: Array<Answer | undefined>
  #left: number
  #done: () => void = () => undefined
  readonly done: Promise<Answer[]>
  constructor(readonly count: number, timeoutMs = 5000) {
    this.answers = new Array<Answer | undefined>(count)
    this.#left = count
    this.done = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.#left} of ${count} decisions unanswered after ${timeoutMs} ms`)), timeoutMs)
      this.#done = () => {
        clearTimeout(timer)
        resolve(this.answers as Answer[])
      }
    })
  }
  onClusterDecision(ctx: StepContext, allowed: boolean, remaining: number, resetMs: number, retryAfterMs: number): void {
    this.#record(indexOf(ctx), { ok: true, allowed, remaining, resetMs, retryAfterMs })
  }
  onClusterFailure(ctx: StepContext): void {
    this.#record(indexOf(ctx), { ok: false, allowed: false, remaining: 0, resetMs: 0, retryAfterMs: 0 })
  }
  #record(i: number, answer: Answer): void {
    if (this.answers[i] !== undefined) throw new Error(`decision ${i} answered twice`)
    this.answers[i] = answer
    if (--this.#left === 0) this.#done()
  }
}

/** `count` decisions in one tick; resolves with the answers in order. */
export function decide(store: RedisStore, limit: ClusterLimit, keyValue: string, count = 1): Promise<Answer[]> {
  const sink = new Recorder(count)
  for (let i = 0; i < count; i++) store.decide(limit, keyValue, sink, ctxOf(i))
  return sink.done
}

export function tokenBucket(ratePerMs: number, burst: number): ClusterLimit {
  return { storeKeyPrefix: `tollgate:rl:{t-${randomUUID()}|tb|`, algorithm: Algorithm.TokenBucket, ratePerMs, burst, limit: 0, windowMs: 0 }
}
export function slidingWindow(limit: number, windowMs: number): ClusterLimit {
  return { storeKeyPrefix: `tollgate:rl:{t-${randomUUID()}|sw|`, algorithm: Algorithm.SlidingWindow, ratePerMs: 0, burst: 0, limit, windowMs }
}

export interface OpenedStore {
  readonly store: RedisStore
  /** How many times onError was called. */
  errors(): number
}

/** A store, ready unless `ready: false`; closed when the test ends (`suite`: the caller closes it). */
export async function openStore(settings: Partial<RedisStoreSettings> & { ready?: boolean; suite?: boolean }): Promise<OpenedStore> {
  let errors = 0
  const store = new RedisStore({ url: settings.url ?? null, cluster: settings.cluster ?? null, timeoutMs: settings.timeoutMs ?? 1000 }, () => { errors++ })
  if (settings.suite !== true) onTestFinished(() => store.close())
  if (settings.ready !== false) await until(() => store.status().state === 'ready', 'the store is ready')
  return { store, errors: () => errors }
}

/** Polls a condition every 10 ms (the store has no events to await); fails after `timeoutMs`. */
export async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`)
    await sleep(10)
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/** Redis's clock, in ms. */
export async function redisNowMs(redis: RedisServer): Promise<number> {
  const [s, us] = (await redis.cli(['TIME'])).split('\n').map(Number)
  return s! * 1000 + us! / 1000
}

export const allowedOf = (answers: readonly Answer[]): boolean[] => answers.map((a) => a.allowed)

export const BUILT_STORE = resolve(import.meta.dirname, '../../../dist/src/policy/ratelimit/redis-store.js')

/**
 * `count` decisions made by a RedisStore (the build in dist/) in a child process: its clock shifted by
 * `faketime` (libfaketime's format, e.g. '+2h'), its environment plus `env` (NODE_EXTRA_CA_CERTS...).
 */
export function decideInChild(url: string, limit: ClusterLimit, keyValue: string, count: number,
  options: { faketime?: string; env?: Record<string, string> } = {}): Promise<{ nowMs: number; answers: Answer[] }> {
  const script = `
    const { RedisStore } = await import(process.argv[1])
    const [url, limit, keyValue, count] = [process.argv[2], JSON.parse(process.argv[3]), process.argv[4], Number(process.argv[5])]
    const store = new RedisStore({ url, cluster: null, timeoutMs: 2000 }, () => {})
    while (store.status().state !== 'ready') await new Promise((r) => setTimeout(r, 10))
    const answers = []
    await new Promise((done) => {
      const push = (a) => { answers.push(a); if (answers.length === count) done() }
      const sink = {
        onClusterDecision: (ctx, allowed, remaining, resetMs, retryAfterMs) => push({ ok: true, allowed, remaining, resetMs, retryAfterMs }),
        onClusterFailure: () => push({ ok: false, allowed: false, remaining: 0, resetMs: 0, retryAfterMs: 0 }),
      }
      for (let i = 0; i < count; i++) store.decide(limit, keyValue, sink, {})
    })
    console.log(JSON.stringify({ nowMs: Date.now(), answers }))
    await store.close()
  `
  return new Promise((resolvePromise, reject) => {
    const node = [process.execPath, '--input-type=module', '-e', script, BUILT_STORE, url, JSON.stringify(limit), keyValue, String(count)]
    const [command, ...args] = options.faketime === undefined ? node : ['faketime', '-f', options.faketime, ...node]
    execFile(command!, args, { timeout: 15_000, env: { ...process.env, ...options.env } }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`child store: ${stderr || err.message}`))
      else resolvePromise(JSON.parse(stdout) as { nowMs: number; answers: Answer[] })
    })
  })
}
