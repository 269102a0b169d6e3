// The work of a reload, off the request path, for one routes.yaml text: loadConfigText (YAML parse,
// ${VAR} substitution, schema validation with defaults, cross-checks, freeze), its YAML part alone
// (parseYamlSource), and buildRouteTable on the validated config, from nothing and with the previous table.
// Run by micro-bench.ts in its own process. The operations take turns, run after run, so that a burst of
// load on the machine hits them all alike.
import { loadConfigText } from '../../src/config/load.js'
import { parseYamlSource } from '../../src/config/yaml-source.js'
import { buildRouteTable, type RouteTable } from '../../src/table/route-table.js'
import { Metrics } from '../../src/telemetry/metrics.js'
import { RUN_KEYS, type MsPerRun } from './micro-report.js'

const NO_ENV: NodeJS.ProcessEnv = Object.freeze({})

interface Timed {
  readonly wallMs: number
  readonly cpuMs: number
}

/** Runs fn once, timed, after a garbage collection so that each run starts from a clean young generation. */
function time<T>(runs: Timed[], fn: () => T): T {
  collectGarbage()
  const cpuStart = process.cpuUsage()
  const start = process.hrtime.bigint()
  const value = fn()
  const wallMs = Number(process.hrtime.bigint() - start) / 1e6
  const used = process.cpuUsage(cpuStart)
  runs.push({ wallMs, cpuMs: (used.user + used.system) / 1000 })
  return value
}

/** gc() when node runs with --expose-gc (micro-bench.ts is started so); otherwise nothing. */
export function collectGarbage(): void {
  const gc: unknown = Reflect.get(globalThis, 'gc')
  if (typeof gc === 'function') gc()
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

function summary(key: string, label: string, runs: readonly Timed[]): MsPerRun {
  const wall = runs.map((r) => r.wallMs)
  return {
    key, label,
    wallMs: median(wall),
    minWallMs: Math.min(...wall),
    maxWallMs: Math.max(...wall),
    firstWallMs: wall[0]!,
    cpuMs: median(runs.map((r) => r.cpuMs)),
    runs: runs.length,
  }
}

/** A config loaded from `text`, and the table built from it: what the lookups run on. */
export function loadAndBuild(text: string, file: string): RouteTable {
  const { config } = loadConfigText(text, file, NO_ENV)
  return buildRouteTable(config, null, new Metrics({ defaultMetrics: false })).table
}

export interface ConfigRuns {
  readonly runs: MsPerRun[]
  /** The table of the last build: the lookups use it. */
  readonly table: RouteTable
}

/** `label`: the size of the table, e.g. `10k`. Each operation runs `runs` times (at least once). */
export function measureConfigRuns(text: string, label: string, runs: number): ConfigRuns {
  const file = `routes-${label}.yaml`
  const load: Timed[] = []
  const parse: Timed[] = []
  const build: Timed[] = []
  const rebuild: Timed[] = []
  let table: RouteTable | null = null
  for (let run = 0; run < Math.max(1, runs); run++) {
    const { config } = time(load, () => loadConfigText(text, file, NO_ENV))
    time(parse, () => parseYamlSource(text, file, NO_ENV))
    // A process has one Metrics; a fresh one per run makes every build the first build of its route ids.
    const metrics = new Metrics({ defaultMetrics: false })
    const first = time(build, () => buildRouteTable(config, null, metrics).table)
    // The file reloaded unchanged: everything is compared with the table in service, and reused.
    table = time(rebuild, () => buildRouteTable(config, first, metrics).table)
  }
  return {
    table: table!,
    runs: [
      summary(RUN_KEYS.build, `buildRouteTable, ${label} routes: validated config, no previous table`, build),
      summary(RUN_KEYS.rebuild, `buildRouteTable, ${label} routes: same config again, previous table reused`, rebuild),
      summary(RUN_KEYS.load, `loadConfigText, ${label}-route file: YAML parse + validation`, load),
      summary(RUN_KEYS.parse, '  of which the YAML parse (parseYamlSource)', parse),
    ],
  }
}
