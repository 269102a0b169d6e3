// What the micro-benchmark process (micro-bench.ts) reports to the harness: the `micro` part of the JSON.

/** Per call, over batches of calls: wall time (hrtime) and this process's CPU time, which stays meaningful on a busy host. */
export interface NsPerCall {
  readonly key: string
  readonly label: string
  /** Median over batches. */
  readonly wallNs: number
  readonly minWallNs: number
  readonly maxWallNs: number
  readonly cpuNs: number
  readonly batches: number
}

/** One operation of milliseconds, repeated. */
export interface MsPerRun {
  readonly key: string
  readonly label: string
  /** Median over runs. */
  readonly wallMs: number
  readonly minWallMs: number
  readonly maxWallMs: number
  /** The first run in the process: code not yet optimised, as on a gateway's first reloads. */
  readonly firstWallMs: number
  readonly cpuMs: number
  readonly runs: number
}

export interface MicroReport {
  readonly node: string
  readonly isQuick: boolean
  /** Which build of the `yaml` package parsed (src/config/yaml-source.ts). */
  readonly yamlBuild: string
  readonly loadAverage1m: number
  /** The large table's routes.yaml (micro-routes.ts). */
  readonly routes: { readonly small: number; readonly large: number; readonly largeFileBytes: number }
  /** Router.match, canonicalizeTarget and the local limiters' decisions (limiter-bench.ts). */
  readonly calls: readonly NsPerCall[]
  /** buildRouteTable, loadConfigText and its YAML part, for the large table. */
  readonly runs: readonly MsPerRun[]
  /** Median of loadConfigText + median of buildRouteTable, for the large table: a reload off the request path. */
  readonly loadPlusBuildMs: number
}

export const CALL_KEYS = {
  lookupSmall: 'lookup1k',
  lookupLarge: 'lookup10k',
  canonicalizeTypical: 'canonicalizeTypical',
  tokenBucketHot: 'tokenBucketHotKey',
  slidingWindowHot: 'slidingWindowHotKey',
  /** Keys picked among 100,000 prebuilt strings (no target: reading the string is a cache miss a request does not have). */
  tokenBucketLive: 'tokenBucket100kKeys',
  /** The same with a new key string per call, as a request's: the 300 ns target. */
  tokenBucketLiveFresh: 'tokenBucket100kKeysFreshKey',
  /** RateLimitStep.run with the two local limiters of scenario policies (no target; beside scenario limits). */
  policiesStep: 'rateLimitStepPolicies',
  /** A route's access list and key auth (issue 17; no target): AccessStep.admits, node:net's BlockList beside it, the key's SHA-256 + lookup. */
  accessAdmits: 'accessStepAdmits',
  accessBlockList: 'accessBlockListPeer',
  keyAuthLookup: 'keyAuthConsumerOf',
  /** The step after auth (no target): auth.allow's Set.has and the consumer counter's Map.get + inc. */
  consumerStep: 'consumerStepAllowCount',
  /** JWT auth (issue 17 item 6; no target): a cached token through JwtAuthStep.run, an uncached RS256 jwtVerify (jose), the bare RSA signature check. */
  jwtCachedHit: 'jwtAuthStepCachedHit',
  jwtVerifyUncached: 'joseJwtVerifyRs256',
  rs256VerifyRaw: 'nodeCryptoVerifyRs256',
  /** A route plugin (issue 17 item 5; no target): PluginStep.run with one sync onRequest, and the bare hook beside it. */
  pluginStep: 'pluginStepSyncHook',
  pluginHookBare: 'pluginHookBare',
} as const

export const RUN_KEYS = {
  build: 'build10k',
  rebuild: 'rebuild10k',
  load: 'load10k',
  parse: 'parse10k',
} as const
