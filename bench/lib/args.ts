// Command-line flags of `npm run bench`.
import { parseArgs } from 'node:util'
import { parseDurationMs } from './units.js'
import { defaultJsonPath, tollgateCli } from './paths.js'

export interface BenchOptions {
  readonly isQuick: boolean
  readonly durationMs: number
  readonly warmupMs: number
  readonly reps: number
  readonly connections: number
  /** Peer names to run; null: every peer. */
  readonly onlyPeers: ReadonlySet<string> | null
  /** Scenario names to run; null: every scenario (only `small` with --quick). */
  readonly onlyScenarios: ReadonlySet<string> | null
  readonly jsonPath: string
  readonly isPinned: boolean
  readonly tollgateCli: string
  /** Run the micro-benchmarks (bench/micro/) after the load scenarios. */
  readonly hasMicro: boolean
  /** Only the micro-benchmarks: no upstream, no peers. */
  readonly isMicroOnly: boolean
  readonly isHelp: boolean
}

export const usage = `Usage: npm run bench -- [flags]

  --quick                 smoke run: scenario small, 1 repetition of 1 s, no warm-up, micro-benchmarks
                          with fewer runs
  --duration 10s          measured time per run (wrk takes whole seconds)
  --warmup 2s             unmeasured load before the first repetition of each peer (0 to skip)
  --reps 5                repetitions, interleaved across peers
  --connections 50        concurrent connections of the load generator
  --only a,b              peers to run (direct,tollgate,undici-stream,fastify-http-proxy,
                          fast-gateway,http-proxy,nginx,haproxy,caddy,node-tls)
  --scenarios a,b         scenarios to run (small,4k,1m-stream,routes-1k,routes-10k,policies,
                          limits,cluster-limit,breaker-open,failing-upstream,tracing,tracing-all,
                          access-log,full-chain,full-chain-cluster,workers,key-auth,tls,h2,
                          jwt-auth,split,split-sticky,mirror)
  --json out.json         where the JSON report goes (default bench/results/last.json)
  --no-pin                do not pin processes to cores with taskset
  --tollgate-cli path     the gateway to run as peer tollgate (default dist/src/cli.js)
  --no-micro              skip the micro-benchmarks (route lookup, canonicalization, config load and build,
                          limiter decisions)
  --micro-only            run only the micro-benchmarks
  --help                  this text
`

const list = (text: string | undefined): ReadonlySet<string> | null =>
  text === undefined ? null : new Set(text.split(',').map((s) => s.trim()).filter((s) => s !== ''))

function positiveInteger(name: string, text: string): number {
  const value = Number(text)
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name}: expected an integer >= 1, got "${text}"`)
  return value
}

export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      quick: { type: 'boolean', default: false },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      reps: { type: 'string' },
      connections: { type: 'string', default: '50' },
      only: { type: 'string' },
      scenarios: { type: 'string' },
      json: { type: 'string', default: defaultJsonPath },
      'no-pin': { type: 'boolean', default: false },
      'tollgate-cli': { type: 'string', default: tollgateCli },
      'no-micro': { type: 'boolean', default: false },
      'micro-only': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  })
  const isQuick = values.quick === true
  if (values['no-micro'] === true && values['micro-only'] === true) throw new Error('--no-micro and --micro-only exclude each other')
  return {
    isQuick,
    durationMs: parseDurationMs(values.duration ?? (isQuick ? '1s' : '10s')),
    warmupMs: parseDurationMs(values.warmup ?? (isQuick ? '0s' : '2s')),
    reps: positiveInteger('reps', values.reps ?? (isQuick ? '1' : '5')),
    connections: positiveInteger('connections', values.connections),
    onlyPeers: list(values.only),
    onlyScenarios: list(values.scenarios) ?? (isQuick ? new Set(['small']) : null),
    jsonPath: values.json,
    isPinned: values['no-pin'] !== true,
    tollgateCli: values['tollgate-cli'],
    hasMicro: values['no-micro'] !== true,
    isMicroOnly: values['micro-only'] === true,
    isHelp: values.help === true,
  }
}
