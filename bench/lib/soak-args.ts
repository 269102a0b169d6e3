// Command-line flags of `npm run soak`.
import { parseArgs } from 'node:util'
import { tollgateCli } from './paths.js'
import { parseDurationMs } from './units.js'

export interface SoakOptions {
  /** Whole run, warm-up included. */
  readonly durationMs: number
  /** Samples before this (counted from the gateway's readiness) are not fitted. */
  readonly warmupMs: number
  /** Multiplies every scenario's request rate. */
  readonly rateScale: number
  /** A config change every this long, alternately the file and etcd. */
  readonly reloadEveryMs: number
  readonly jsonPath: string | null
  /** The gateway's --workers; 1: a single process. */
  readonly workers: number
  readonly tollgateCli: string
  /** A scenario whose expectation is replaced by one no response meets: proves the soak fails on it. */
  readonly breakScenario: string | null
  /** RSS's rise allowance instead of soak-trend.ts's (null: that one). */
  readonly rssAllowanceMiB: number | null
  readonly isHelp: boolean
}

export const soakUsage = `Usage: npm run soak -- [flags]

  --minutes 10            length of the whole run, warm-up included (fractions allowed: 0.5)
  --warmup 60s            samples of the first this-long are not fitted (default: 60 s, or a third of a
                          run shorter than 3 minutes)
  --rate 1                multiplies every scenario's request rate (1: ~250 requests/s in all)
  --reload-every 3s       a config change this often, alternately routes.yaml and etcd
  --json out.json         write samples, figures and failures as JSON
  --workers 1             run the gateway with --workers N (RSS and fds summed over its processes)
  --tollgate-cli path     the gateway to run (default dist/src/cli.js)
  --break scenario        expect a status no response has from this scenario (shows that the soak fails)
  --rss-allowance 8       the rise in MiB of RSS a run may show without failing (for runs shorter than
                          V8's heap growth after start, about 2 minutes: the CI smoke uses 16)
  --help                  this text

Exit code 0 when every figure stays flat, every response is one its scenario expects and the gateway
neither crashed nor printed an uncaught exception or fatal line; 1 otherwise, with one line per reason.
`

function positiveNumber(name: string, text: string): number {
  const value = Number(text)
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name}: expected a number > 0, got "${text}"`)
  return value
}

export function parseSoakArgs(argv: readonly string[]): SoakOptions {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      minutes: { type: 'string', default: '10' },
      warmup: { type: 'string' },
      rate: { type: 'string', default: '1' },
      'reload-every': { type: 'string', default: '3s' },
      json: { type: 'string' },
      workers: { type: 'string', default: '1' },
      'tollgate-cli': { type: 'string', default: tollgateCli },
      break: { type: 'string' },
      'rss-allowance': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  })
  const durationMs = positiveNumber('minutes', values.minutes) * 60_000
  const warmupMs = values.warmup === undefined ? Math.min(60_000, Math.round(durationMs / 3)) : parseDurationMs(values.warmup)
  if (warmupMs >= durationMs) throw new Error(`--warmup ${values.warmup ?? ''}: must be shorter than the run (${durationMs / 1000} s)`)
  const workers = Number(values.workers)
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`--workers: expected an integer >= 1, got "${values.workers}"`)
  const reloadEveryMs = parseDurationMs(values['reload-every'])
  if (reloadEveryMs < 500) throw new Error(`--reload-every: at least 500ms, got "${values['reload-every']}"`)
  return {
    durationMs,
    warmupMs,
    rateScale: positiveNumber('rate', values.rate),
    reloadEveryMs,
    jsonPath: values.json ?? null,
    workers,
    tollgateCli: values['tollgate-cli'],
    breakScenario: values.break ?? null,
    rssAllowanceMiB: values['rss-allowance'] === undefined ? null : positiveNumber('rss-allowance', values['rss-allowance']),
    isHelp: values.help === true,
  }
}
