// The micro-benchmarks of bench/README.md "Targets", in a process of their own so that the harness's heap
// and timers do not skew them: route lookup at 1k and 10k routes, canonicalization of a typical path, a
// local rate-limit decision (one hot key, and 100,000 live keys), building 10k routes (buildRouteTable on a validated config) and, separately, loading the 10k-route file
// (loadConfigText). `npm run bench` starts it (bench/lib/micro.ts) and prints the table:
//
//   node --expose-gc dist/bench/micro/micro-bench.js --out micro.json [--quick]
//
// The report (micro-report.ts) goes to --out as JSON. --quick: fewer batches and runs (a smoke run).
import { writeFileSync } from 'node:fs'
import os from 'node:os'
import { parseArgs } from 'node:util'
import { yamlBuild } from '../../src/config/yaml-source.js'
import { collectGarbage, loadAndBuild, measureConfigRuns } from './config-bench.js'
import { RUN_KEYS, type MicroReport } from './micro-report.js'
import { microRequestPaths, microRoutesYaml, servicesIn } from './micro-routes.js'
import { measureOperations } from './batches.js'
import { limiterOperations } from './limiter-bench.js'
import { accessAuthOperations, jwtAuthOperations, measureJwtVerify } from './access-auth-bench.js'
import { pluginOperations } from './plugin-bench.js'
import { routerOperations } from './router-bench.js'

const SMALL = 1_000
const LARGE = 10_000

const { values } = parseArgs({
  options: { out: { type: 'string' }, quick: { type: 'boolean', default: false } },
  strict: true,
})
const isQuick = values.quick === true
const largeText = microRoutesYaml(LARGE)

const config = measureConfigRuns(largeText, '10k', isQuick ? 1 : 5)
const small = loadAndBuild(microRoutesYaml(SMALL), 'routes-1k.yaml')
const limiters = limiterOperations()
collectGarbage()
const routing = routerOperations({
  small: small.router,
  large: config.table.router,
  smallPaths: microRequestPaths(servicesIn(SMALL)),
  largePaths: microRequestPaths(servicesIn(LARGE)),
  smallLabel: '1k',
  largeLabel: '10k',
})
const calls = measureOperations([...routing, ...limiters.operations, ...accessAuthOperations(), ...(await jwtAuthOperations()), ...pluginOperations()],
  isQuick ? { rounds: 1, batchesPerRound: 3, warmupBatches: 2 } : { rounds: 5, batchesPerRound: 15, warmupBatches: 5 })
calls.push(...(await measureJwtVerify(isQuick ? 1 : 3)))
limiters.close()

const runOf = (key: string): number => config.runs.find((r) => r.key === key)?.wallMs ?? Number.NaN
const report: MicroReport = {
  node: process.version,
  isQuick,
  yamlBuild,
  loadAverage1m: os.loadavg()[0] ?? 0,
  routes: { small: SMALL, large: LARGE, largeFileBytes: Buffer.byteLength(largeText) },
  calls,
  runs: config.runs,
  loadPlusBuildMs: runOf(RUN_KEYS.load) + runOf(RUN_KEYS.build),
}
const json = `${JSON.stringify(report, null, 2)}\n`
if (values.out === undefined) process.stdout.write(json)
else writeFileSync(values.out, json)
