// One request's run through its route's plugins (README "Plugins"): the ctx every hook gets, and the
// machinery that calls the hooks one after another, phase by phase. Hot path for routes with plugins; routes
// without plugins never make one.
//
// Phases and what ends them:
//   request   PluginStep.run -> each onRequest in order -> Continue (next route step), or Done: respond()
//             was called (the plugin's answer is sent) or a hook failed (500 PLUGIN_FAILED)
//   response  forward.ts, when the upstream's headers arrive -> each onResponse in order -> Continue
//             (write the head), Done (a hook failed: forward.ts answers 500 PLUGIN_FAILED)
//   log       Exchange.complete -> each onLog in order; failures are only counted
// A hook that returns a non-promise costs no promise and no timer: its run time is checked against the
// budget afterwards (a synchronous hook cannot be interrupted; running past the budget is still a failure).
// A hook that returns a thenable suspends the phase; a timer bounds it. Its settlement and its timer race:
// whichever comes first decides (#seq), the other is ignored. A rejection is always handled here, so a
// plugin's rejected promise never becomes an unhandled rejection.
import { performance } from 'node:perf_hooks'
import { PLUGIN_FAILED } from '../../errors.js'
import { Next, type StepContext } from '../../http/request-step.js'
import { HOOK_NAMES, type LogContext, type RequestContext, type ResponseContext } from './plugin-api.js'
import type { BoundPlugin, HookFailures, PluginChain, PluginHook } from './plugin-chain.js'
import { pluginModules } from './plugin-modules.js'

/** Told when an onResponse that went async is done (the exchange: forward.ts writes the head or fails it). */
export interface ResponseHeadSink {
  pluginResponseDone(failed: boolean): void
}

const Phase = { Request: 0, Response: 1, Log: 2 } as const
type Phase = (typeof Phase)[keyof typeof Phase]

/** What one hook call came to. */
const Outcome = { Ok: 0, Threw: 1, Timeout: 2, Pending: 3 } as const
type Outcome = (typeof Outcome)[keyof typeof Outcome]

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
// RFC 9110 §5.5: field values are visible characters, spaces and tabs (and obs-text); never CR, LF or NUL.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
// Framing and hop-by-hop headers are the gateway's (README "Headers"); host has a fixed slot upstream.
const NOT_SETTABLE = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade'])
const EMPTY_CONFIG: Readonly<Record<string, unknown>> = Object.freeze({})

/** Module-level timer callback: no closure per hook call. */
function onHookTimeout(call: PluginCall, seq: number): void {
  call.hookSettled(seq, Outcome.Timeout)
}

export class PluginCall implements RequestContext, ResponseContext, LogContext {
  /** The config of the plugin whose hook runs now. */
  config: Readonly<Record<string, unknown>> = EMPTY_CONFIG
  readonly route: string
  readonly method: string
  readonly path: string
  readonly headers: StepContext['req']['headers']
  /** onResponse: the upstream's status; onLog: the client's. */
  status = 0
  durationMs = 0
  /** Headers for the upstream set in onRequest: [lower-case name, value, ...]; forward.ts applies them. */
  upstreamHeaders: string[] | null = null
  readonly #ctx: StepContext
  readonly #chain: PluginChain
  #query: URLSearchParams | null = null
  #phase: Phase = Phase.Request
  /** Index, in the phase's list, of the plugin whose hook runs (or ran last). */
  #index = 0
  /** Number of the hook call in flight: a settlement or timer carrying another number is stale. */
  #seq = 0
  #timer: NodeJS.Timeout | null = null
  /** onResponse: the head being built (forward.ts's list). */
  #responseHeaders: string[] | null = null
  #sink: ResponseHeadSink | null = null
  /** respond() in onRequest: status 0 = not called. */
  #answerStatus = 0
  #answerHeaders: string[] | null = null
  #answerBody: Buffer | null = null
  /** What the failing hook threw or rejected with, until it is reported. */
  #error: unknown = null

  constructor(ctx: StepContext, chain: PluginChain) {
    this.#ctx = ctx
    this.#chain = chain
    this.route = chain.routeId
    this.method = ctx.req.method ?? 'GET'
    this.path = ctx.canonicalPath
    this.headers = ctx.req.headers
  }

  // ---- the ctx (plugin-api.ts) ----

  get query(): URLSearchParams {
    return (this.#query ??= new URLSearchParams(this.#ctx.query))
  }

  get clientIp(): string {
    return this.#ctx.clientIp()
  }

  get consumer(): string | null {
    return this.#ctx.consumer
  }

  setHeader(name: string, value: string): void {
    const lower = checkedName(name)
    if (typeof value !== 'string' || !FIELD_VALUE.test(value)) throw new TypeError(`setHeader(${JSON.stringify(name)}): the value must be a string without control characters`)
    if (this.#phase === Phase.Request) (this.upstreamHeaders ??= []).push(lower, value)
    else if (this.#phase === Phase.Response && this.#responseHeaders !== null) replaceHeader(this.#responseHeaders, lower, value)
    else throw new TypeError('setHeader is for onRequest and onResponse')
  }

  respond(status: number, headers?: Readonly<Record<string, string>>, body?: string | Uint8Array): void {
    if (this.#phase !== Phase.Request) throw new TypeError('respond is for onRequest')
    if (!Number.isInteger(status) || status < 200 || status > 599) throw new TypeError(`respond: the status must be an integer from 200 to 599, got ${String(status)}`)
    const out: string[] = []
    if (headers !== undefined && headers !== null) {
      for (const [name, value] of Object.entries(headers)) {
        const lower = checkedName(name)
        if (typeof value !== 'string' || !FIELD_VALUE.test(value)) throw new TypeError(`respond: the value of ${JSON.stringify(name)} must be a string without control characters`)
        if (lower !== 'x-request-id') out.push(lower, value)
      }
    }
    const bytes = body === undefined || body === null ? Buffer.alloc(0)
      : typeof body === 'string' ? Buffer.from(body)
        : body instanceof Uint8Array ? Buffer.from(body.buffer, body.byteOffset, body.byteLength)
          : null
    if (bytes === null) throw new TypeError('respond: the body must be a string or a Uint8Array')
    out.push('content-length', String(bytes.length))
    this.#answerStatus = status
    this.#answerHeaders = out
    this.#answerBody = bytes
  }

  // ---- the request phase (PluginStep) ----

  runRequest(): Next {
    this.#phase = Phase.Request
    return this.#requestFrom(0)
  }

  #requestFrom(start: number): Next {
    const list = this.#chain.request
    for (let i = start; i < list.length; i++) {
      const plugin = list[i]!
      this.#index = i
      const outcome = this.#invoke(plugin, plugin.onRequest!, plugin.timeoutMs)
      if (outcome === Outcome.Pending) return Next.Suspend
      if (outcome !== Outcome.Ok) {
        this.#count(plugin.failures[0]!, outcome)
        this.#ctx.refuse(PLUGIN_FAILED, false)
        return Next.Done
      }
      if (this.#answerStatus !== 0) {
        this.#ctx.respond(this.#answerStatus, this.#answerHeaders!, this.#answerBody!)
        return Next.Done
      }
    }
    return Next.Continue
  }

  // ---- the response phase (forward.ts) ----

  get hasOnResponse(): boolean {
    return this.#chain.response.length > 0
  }

  /**
   * The upstream's head is `headers` ([name, value, ...], changed in place). Continue: write it. Suspend: a
   * hook went async; `sink` is told when the phase is done. Done: a hook failed (counted); answer 500.
   */
  runResponse(status: number, headers: string[], sink: ResponseHeadSink): Next {
    this.#phase = Phase.Response
    this.status = status
    this.#responseHeaders = headers
    this.#sink = sink
    return this.#responseFrom(0)
  }

  #responseFrom(start: number): Next {
    const list = this.#chain.response
    for (let i = start; i < list.length; i++) {
      const plugin = list[i]!
      this.#index = i
      const outcome = this.#invoke(plugin, plugin.onResponse!, plugin.timeoutMs)
      if (outcome === Outcome.Pending) return Next.Suspend
      if (outcome !== Outcome.Ok) {
        this.#count(plugin.failures[1]!, outcome)
        return Next.Done
      }
    }
    this.#responseHeaders = null
    return Next.Continue
  }

  /** forward.ts, once the upstream headers are built: the headers set in onRequest replace those of the same name. */
  applyUpstreamHeaders(headers: string[]): void {
    const set = this.upstreamHeaders
    if (set === null) return
    for (let i = 0; i < set.length; i += 2) replaceHeader(headers, set[i]!, set[i + 1]!)
  }

  // ---- the log phase (Exchange.complete) ----

  get hasOnLog(): boolean {
    return this.#chain.log.length > 0
  }

  runLog(status: number, durationMs: number): void {
    // A hook of an earlier phase still pending (the client went away meanwhile): it no longer decides anything.
    this.#cancelTimer()
    this.#seq++
    this.#phase = Phase.Log
    this.status = status
    this.durationMs = durationMs
    this.#logFrom(0)
  }

  #logFrom(start: number): void {
    const list = this.#chain.log
    for (let i = start; i < list.length; i++) {
      const plugin = list[i]!
      this.#index = i
      const outcome = this.#invoke(plugin, plugin.onLog!, plugin.timeoutMs)
      if (outcome === Outcome.Pending) return
      if (outcome !== Outcome.Ok) this.#count(plugin.failures[2]!, outcome)
    }
  }

  // ---- calling a hook ----

  #invoke(plugin: BoundPlugin, hook: PluginHook, timeoutMs: number): Outcome {
    this.config = plugin.config
    this.#cancelTimer()
    const seq = ++this.#seq
    const startMs = performance.now()
    let result: unknown
    try {
      result = (hook as (ctx: PluginCall) => unknown)(this)
    } catch (err) {
      this.#error = err
      return Outcome.Threw
    }
    if (result === null || (typeof result !== 'object' && typeof result !== 'function') || typeof (result as PromiseLike<unknown>).then !== 'function') {
      return performance.now() - startMs > timeoutMs ? Outcome.Timeout : Outcome.Ok
    }
    // Async: the promise already costs allocations; two small closures carrying `seq` are the least of them.
    try {
      (result as PromiseLike<unknown>).then(() => this.hookSettled(seq, Outcome.Ok), (err: unknown) => this.#rejected(seq, err))
    } catch (err) {
      this.#error = err
      return Outcome.Threw // a thenable whose then() throws
    }
    this.#timer = setTimeout(onHookTimeout, Math.max(0, timeoutMs - (performance.now() - startMs)), this, seq)
    return Outcome.Pending
  }

  /** An async hook settled, or its time ran out (onHookTimeout). Not for plugins. */
  hookSettled(seq: number, outcome: Outcome): void {
    if (seq !== this.#seq) return // decided already: by the timer, or by the settlement
    this.#seq++
    this.#cancelTimer()
    const i = this.#index
    const ctx = this.#ctx
    switch (this.#phase) {
      case Phase.Request: {
        const plugin = this.#chain.request[i]!
        if (outcome !== Outcome.Ok) {
          this.#count(plugin.failures[0]!, outcome)
          ctx.refuse(PLUGIN_FAILED, false) // nothing when the request ended meanwhile
          return
        }
        if (ctx.finished) return
        if (this.#answerStatus !== 0) return ctx.respond(this.#answerStatus, this.#answerHeaders!, this.#answerBody!)
        if (this.#requestFrom(i + 1) === Next.Continue) ctx.resume()
        return
      }
      case Phase.Response: {
        const plugin = this.#chain.response[i]!
        if (outcome !== Outcome.Ok) {
          this.#count(plugin.failures[1]!, outcome)
          this.#sink!.pluginResponseDone(true)
          return
        }
        const next = this.#responseFrom(i + 1)
        if (next !== Next.Suspend) this.#sink!.pluginResponseDone(next === Next.Done)
        return
      }
      default: {
        const plugin = this.#chain.log[i]!
        if (outcome !== Outcome.Ok) this.#count(plugin.failures[2]!, outcome)
        this.#logFrom(i + 1)
      }
    }
  }

  #rejected(seq: number, err: unknown): void {
    if (seq === this.#seq) this.#error = err
    this.hookSettled(seq, Outcome.Threw)
  }

  #count(failures: HookFailures, outcome: Outcome): void {
    const timedOut = outcome === Outcome.Timeout
    if (timedOut) failures.timeout.inc()
    else failures.threw.inc()
    const plugin = (this.#phase === Phase.Request ? this.#chain.request : this.#phase === Phase.Response ? this.#chain.response : this.#chain.log)[this.#index]!
    pluginModules.reportFailure(this.route, plugin, HOOK_NAMES[this.#phase]!, timedOut ? null : this.#error)
    this.#error = null
  }

  #cancelTimer(): void {
    if (this.#timer === null) return
    clearTimeout(this.#timer)
    this.#timer = null
  }
}

function checkedName(name: string): string {
  if (typeof name !== 'string' || !TOKEN.test(name)) throw new TypeError(`setHeader: ${JSON.stringify(name)} is not a header name`)
  const lower = name.toLowerCase()
  if (NOT_SETTABLE.has(lower)) throw new TypeError(`setHeader: ${lower} is the gateway's to set`)
  return lower
}

/** Replaces every `name` in a flat [name, value, ...] list (names lower case) by one `name: value` at the end. */
function replaceHeader(headers: string[], name: string, value: string): void {
  for (let i = headers.length - 2; i >= 0; i -= 2) if (headers[i] === name) headers.splice(i, 2)
  headers.push(name, value)
}
