// The API a route plugin is written against (README "Plugins"): what a plugin module exports and what its
// hooks get. Plugin authors read this file; JavaScript plugins can name the types in JSDoc
// (`@param {import('tollgate/dist/src/policy/plugins/plugin-api.js').RequestContext} ctx`).
//
// The model is Zuul's filters and Kong's phases, cut to three hooks:
//   onRequest(ctx)   after the route's access list, auth and rate limits, before its circuit breaker and the
//                    upstream: may add headers for the upstream or answer the request itself
//   onResponse(ctx)  when the upstream's response headers arrive, before they go to the client: may set
//                    response headers
//   onLog(ctx)       after the response ended: may look, cannot change anything
// Each may return a promise. A throw, a rejection or a run past the plugin's `timeout` is a plugin failure:
// counted in tollgate_plugin_errors_total; for onRequest and onResponse the client gets 500 PLUGIN_FAILED and
// (onRequest) the upstream is not called. A failing onLog changes nothing but the count.
import type { IncomingHttpHeaders } from 'node:http'

/** What every hook sees. */
export interface PluginContext {
  /** This plugin's `config` from routes.yaml, checked against its configSchema; frozen. */
  readonly config: Readonly<Record<string, unknown>>
  /** The route id. */
  readonly route: string
  /** The request method, as the client sent it. */
  readonly method: string
  /** The canonical path (README "The canonical path"), without the query: what matched and what is forwarded. */
  readonly path: string
  /** The query parameters (parsed on first read). */
  readonly query: URLSearchParams
  /** The request headers, names in lower case. Read-only: use setHeader for the upstream's. */
  readonly headers: Readonly<IncomingHttpHeaders>
  /** The client address as limits and access lists see it (X-Forwarded-For past clientIp.trustedProxies). */
  readonly clientIp: string
  /** The consumer the route's auth identified, or null. */
  readonly consumer: string | null
}

/** onRequest's ctx. */
export interface RequestContext extends PluginContext {
  /**
   * Sets a header on the request to the upstream (replacing one of that name). Refused (a throw, hence
   * PLUGIN_FAILED): names that are not HTTP tokens, values with control characters, and `host` and the
   * framing headers (content-length, transfer-encoding, connection and the other hop-by-hop names).
   */
  setHeader(name: string, value: string): void
  /**
   * Answers the request instead of the upstream once the hook returns (or its promise resolves): the
   * upstream is not called and later plugins do not run. `status` 200-599. The gateway adds
   * content-length and x-request-id.
   */
  respond(status: number, headers?: Readonly<Record<string, string>>, body?: string | Uint8Array): void
}

/** onResponse's ctx. */
export interface ResponseContext extends PluginContext {
  /** The upstream's status code. */
  readonly status: number
  /** Sets a header on the response to the client (replacing one of that name); the same names are refused as in onRequest. */
  setHeader(name: string, value: string): void
}

/** onLog's ctx. */
export interface LogContext extends PluginContext {
  /** The status the client got (499: it went away first). */
  readonly status: number
  /** From the first header byte to the end of the response, in milliseconds. */
  readonly durationMs: number
}

/** What a plugin module exports: at least one hook, and optionally configSchema (a JSON Schema, draft-07). */
export interface PluginModule {
  readonly onRequest?: (ctx: RequestContext) => void | Promise<void>
  readonly onResponse?: (ctx: ResponseContext) => void | Promise<void>
  readonly onLog?: (ctx: LogContext) => void | Promise<void>
  readonly configSchema?: Readonly<Record<string, unknown>>
}

/** The hook names, in the order a request meets them; also the `hook` label of tollgate_plugin_errors_total. */
export type HookName = 'onRequest' | 'onResponse' | 'onLog'
export const HOOK_NAMES: readonly HookName[] = Object.freeze(['onRequest', 'onResponse', 'onLog'])
