// Config route -> CompiledRoute: what a matched request reads (rewrite, body limit, its pipeline steps,
// metrics), each component reused across reloads while its own settings are unchanged (reuse.ts).
import { performance } from 'node:perf_hooks'
import type { Config, Route } from '../config/schema.js'
import type { RequestStep } from '../http/request-step.js'
import type { RouteMetrics } from '../telemetry/metrics.js'
import { compileBreaker, type CompiledBreaker } from './compiled-breaker.js'
import { compileRateLimits, type LimitContext, type Limiter } from './compiled-limits.js'
import type { CompiledUpstream } from './compiled-upstream.js'
import type { RateLimitStep } from '../policy/ratelimit/ratelimit-step.js'
import { AccessStep } from '../policy/access/access-step.js'
import { KeyAuthStep } from '../policy/auth/key-auth-step.js'
import { JwtAuthStep } from '../policy/auth/jwt-auth-step.js'
import { BasicAuthStep } from '../policy/auth/basic-auth-step.js'
import { JwksKeys } from '../policy/auth/jwks-keys.js'
import { ConsumerStep } from '../policy/auth/consumer-step.js'
import type { AuthStep, CredentialStrip } from '../policy/auth/auth-step.js'
import { jwtAlgorithms, parsePublicKey } from '../config/auth-keys.js'
import { buildPluginChain, type PluginChain } from '../policy/plugins/plugin-chain.js'
import { pluginModules } from '../policy/plugins/plugin-modules.js'
import { reuse, type Keyed } from './reuse.js'
import { compileRewrite, type RewriteFn } from './rewrite.js'
import { compileSplit, type CompiledSplit } from './compiled-split.js'
import { compileMirror, type CompiledMirror } from './compiled-mirror.js'

/** How the route's requests are traced (README "Tracing"): worked out at build time, read per request. */
export interface RouteTracing {
  /** route.tracing.sampleRatio, else tracing.sampleRatio: for traces that start here. */
  readonly sampleRatio: number
  /** tracing.parentBased: follow the sampled flag of a valid incoming traceparent. */
  readonly parentBased: boolean
  /** match.path, the span's http.route. */
  readonly template: string
}

/** route.idleTimeout when absent (README "WebSocket"): nginx's proxy_read_timeout is 60s, Envoy's stream idle timeout 5m. */
const DEFAULT_IDLE_TIMEOUT_MS = 300_000

export class CompiledRoute {
  constructor(
    readonly id: string,
    readonly upstream: CompiledUpstream,
    readonly rewritePath: RewriteFn,
    readonly maxBodyBytes: number,
    readonly allowEncodedSlash: boolean,
    readonly websocket: boolean,
    /** Run in order after the match, before forwarding (src/proxy/pipeline.ts). */
    readonly steps: readonly RequestStep[],
    readonly metrics: RouteMetrics,
    /** The circuit breaker (null: no circuitBreaker); record.ts tells it each request's outcome. */
    readonly breaker: CompiledBreaker | null,
    readonly parts: {
      readonly rewrite: Keyed<RewriteFn>
      /** The access-list step (null: no access) and the auth step (null: no auth). */
      readonly access: Keyed<AccessStep> | null
      readonly auth: Keyed<AuthStep> | null
      /** auth.allow and the consumer counter (null: jwt without allow, or no auth), right after the auth step. */
      readonly consumer?: Keyed<ConsumerStep> | null
      /** The rate-limit step (null: no rateLimit) and its limiters, each with its reuse key. */
      readonly rateLimit: RateLimitStep | null
      readonly limiters: readonly Keyed<Limiter>[]
      /** The plugins (null: none), keyed by their settings and the module versions. */
      readonly plugins?: Keyed<PluginChain> | null
    },
    readonly tracing: RouteTracing,
    /** Auth (null: none): forward.ts strips its credential and adds its forwardConsumer header. */
    readonly auth: AuthStep | null,
    /** route.forwardClientCert, lower case (null: none): the header the client certificate's subject goes in. */
    readonly forwardClientCert: string | null = null,
    /** websocket routes: route.idleTimeout in ms, for the upgraded connections it opens (src/proxy/websocket.ts). */
    readonly idleTimeoutMs: number = DEFAULT_IDLE_TIMEOUT_MS,
    /** The weighted split / splitRules (null: one upstream): its step chooses ex.upstream among split.upstreams. */
    readonly split: CompiledSplit | null = null,
    /** The mirror (null: none): forward.ts copies requests to it (src/proxy/mirror.ts). */
    readonly mirror: CompiledMirror | null = null,
  ) {}
}

export function compileRoute(
  route: Route, config: Config, upstream: CompiledUpstream, upstreams: ReadonlyMap<string, CompiledUpstream>,
  old: CompiledRoute | undefined, metrics: RouteMetrics, limitContext: LimitContext,
): CompiledRoute {
  const rewrite = reuse(old?.parts.rewrite, route.rewrite ?? null, () => compileRewrite(route))
  const limits = compileRateLimits(route, old === undefined ? undefined : { step: old.parts.rateLimit, parts: old.parts.limiters }, limitContext)
  const maxBodyBytes = route.maxBodySize ?? config.limits.maxBodySize
  const allowEncodedSlash = route.allowEncodedSlash ?? config.paths.allowEncodedSlash
  const breaker = compileBreaker(route, upstream, upstreams, old?.breaker ?? null, limitContext.metrics, performance.now())
  // Rebuilt when their settings or the route's metrics (their counter cells) change. The auth step's
  // state (a JWT or basic verification cache, a JWKS) is only a cache: a rebuild starts it afresh.
  const sameMetrics = old !== undefined && old.metrics === metrics
  const access = route.access === undefined ? null
    : reuse(sameMetrics ? old.parts.access ?? undefined : undefined, route.access, () => buildAccess(route.access!, metrics))
  const auth = route.auth === undefined ? null
    : reuse(sameMetrics ? old.parts.auth ?? undefined : undefined, { ...route.auth, allow: undefined }, () => buildAuth(route.auth!, metrics))
  // The consumer step (auth.allow, the consumer counter) is keyed by the whole auth block; a reload that
  // changes only allow keeps the auth step above and its verification cache.
  const consumer = route.auth === undefined ? null : consumerNames(route.auth)
  const consumerStep = consumer === null ? null
    : reuse(sameMetrics ? old.parts.consumer ?? undefined : undefined, route.auth,
      () => new ConsumerStep(route.auth!.allow === undefined ? null : { names: route.auth!.allow, forbidden: metrics.authFailures('forbidden') }, metrics.consumerRequests(consumer)))
  if (consumerStep === null) metrics.consumerRequests([]) // a reload that took the route's consumers away drops their series
  // The order of a route's steps (src/proxy/pipeline.ts): its access list (who may ask at all, before any
  // work), its key auth (who is asking: the consumer the limiters may key on), its limiters, then its
  // breaker's admission, which runs the upstream's bulkhead itself (or the fallback upstream's), else the
  // upstream's bulkhead.
  // A changed plugin file is a new module (plugin-modules.ts): its URL is part of the key.
  const plugins = route.plugins === undefined || route.plugins.length === 0 ? null
    : reuse(sameMetrics ? old.parts.plugins ?? undefined : undefined, route.plugins.map((p) => [p, pluginModules.get(p.module).url]),
      () => buildPluginChain(route.id, route.plugins!, (file) => pluginModules.get(file),
        (plugin, hook) => ({ threw: metrics.pluginErrors(plugin, hook, 'threw'), timeout: metrics.pluginErrors(plugin, hook, 'timeout') })))
  // Plugins run after the limiters, before the admission (README "Plugins").
  // A split route chooses its upstream after the limiters; the split step then runs that upstream's admission.
  const split = compileSplit(route, upstreams, upstream, breaker, old?.split ?? null)
  const mirror = compileMirror(route, upstreams, metrics, old?.mirror ?? null)
  const admission: RequestStep = split !== null ? split.step : breaker === null ? upstream.bulkhead : breaker.step
  const steps: RequestStep[] = []
  if (access !== null) steps.push(access.value)
  if (auth !== null) steps.push(auth.value)
  if (consumerStep !== null) steps.push(consumerStep.value)
  if (limits.step !== null) steps.push(limits.step)
  if (plugins !== null) steps.push(plugins.value.step)
  steps.push(admission)
  const tracing = routeTracing(route, config, old?.tracing)
  const forwardClientCert = route.forwardClientCert?.toLowerCase() ?? null
  const idleTimeoutMs = route.idleTimeout ?? DEFAULT_IDLE_TIMEOUT_MS
  if (old !== undefined && old.tracing === tracing && old.forwardClientCert === forwardClientCert && old.upstream === upstream && old.parts.rewrite === rewrite && old.maxBodyBytes === maxBodyBytes && old.breaker === breaker &&
    old.allowEncodedSlash === allowEncodedSlash && old.websocket === route.websocket && old.idleTimeoutMs === idleTimeoutMs && old.metrics === metrics && old.split === split && old.mirror === mirror &&
    sameSteps(old.steps, steps) && sameSteps(old.parts.limiters, limits.parts)) {
    return old
  }
  return new CompiledRoute(route.id, upstream, rewrite.value, maxBodyBytes, allowEncodedSlash, route.websocket, steps, metrics, breaker,
    { rewrite, access, auth, consumer: consumerStep, rateLimit: limits.step, limiters: limits.parts, plugins }, tracing, auth?.value ?? null, forwardClientCert, idleTimeoutMs, split, mirror)
}

function buildAccess(access: NonNullable<Route['access']>, metrics: RouteMetrics): AccessStep {
  return new AccessStep(access.allow, access.deny, metrics.authFailures('forbidden'))
}

/**
 * The consumers tollgate_consumer_requests_total may name on this route, or null when the route needs no
 * step after its auth: key and basic consumers are in the config; a JWT route's subjects are bounded only
 * by auth.allow (without it any `sub` an identity provider signs would be a new series).
 */
function consumerNames(auth: NonNullable<Route['auth']>): readonly string[] | null {
  if (auth.allow !== undefined) return auth.allow // key/basic: check.ts made sure each is a consumer; the others get 403
  if (auth.type === 'key' && auth.key !== undefined) return Object.keys(auth.key.consumers)
  if (auth.type === 'basic' && auth.basic !== undefined) return Object.keys(auth.basic.consumers)
  return null
}

/** check.ts refused every auth without its complete block: the throw is a bug guard, not a config message. */
function buildAuth(auth: NonNullable<Route['auth']>, metrics: RouteMetrics): AuthStep {
  const counters = { missing: metrics.authFailures('missing'), invalid: metrics.authFailures('invalid') }
  const strip = (keyHeader: string, queryParam: string | null): CredentialStrip =>
    Object.freeze({ keyHeader, queryParam, forwardConsumer: auth.forwardConsumer.toLowerCase() })
  if (auth.type === 'key' && auth.key !== undefined) {
    return new KeyAuthStep(strip(auth.key.header.toLowerCase(), auth.key.query ?? null), auth.key.consumers, counters)
  }
  if (auth.type === 'basic' && auth.basic !== undefined) return new BasicAuthStep(strip('authorization', null), auth.basic.consumers, counters)
  const jwt = auth.jwt
  if (auth.type !== 'jwt' || jwt === undefined) throw new Error(`auth type ${auth.type} without its block reached the table (config/check.ts refuses it)`)
  const publicKey = jwt.publicKey === undefined ? null : parsePublicKey(jwt.publicKey)
  if (typeof publicKey === 'string') throw new Error(`auth.jwt.publicKey reached the table unparsed (config/check.ts refuses it): ${publicKey}`)
  const key = jwt.secret !== undefined ? new TextEncoder().encode(jwt.secret)
    : publicKey !== null ? publicKey
      : JwksKeys.for(jwt.jwks!).getKey
  return new JwtAuthStep(strip('authorization', null), {
    key,
    algorithms: jwtAlgorithms(jwt, publicKey),
    ...(jwt.issuer === undefined ? {} : { issuer: jwt.issuer }),
    ...(jwt.audience === undefined ? {} : { audience: jwt.audience }),
    leewayMs: jwt.leeway,
  }, { ...counters, expired: metrics.authFailures('expired') })
}

/** The route's tracing settings; `old` when they did not change. */
function routeTracing(route: Route, config: Config, old: RouteTracing | undefined): RouteTracing {
  const sampleRatio = route.tracing?.sampleRatio ?? config.tracing.sampleRatio
  const parentBased = config.tracing.parentBased
  const template = route.match.path
  if (old !== undefined && old.sampleRatio === sampleRatio && old.parentBased === parentBased && old.template === template) return old
  return Object.freeze({ sampleRatio, parentBased, template })
}

function sameSteps<T>(a: readonly T[], b: readonly T[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i])
}
