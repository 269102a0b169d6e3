// The soak's once-a-second look at the gateway process: RSS and open file descriptors from /proc, heap used,
// event-loop delay p99 and active handles from its admin /metrics (prom-client's default metrics). With
// --workers the gateway is a primary and its workers in one process group: RSS and fds are summed over the
// group, and /metrics is the primary's sum over the workers (their event-loop p99s averaged, by prom-client).
import { readdirSync, readFileSync } from 'node:fs'
import { Agent, request } from 'undici'
import { readRssKib } from './processes.js'
import type { FigureKey } from './soak-trend.js'

export interface Sample {
  /** Seconds since the soak started. */
  readonly t: number
  /** Raw values: bytes, counts, seconds; a figure that could not be read is absent. */
  readonly values: Partial<Record<FigureKey, number>>
}

/** Open file descriptors of a process (entries of /proc/<pid>/fd), or null when it is gone. */
export function countFds(pid: number): number | null {
  try {
    return readdirSync(`/proc/${pid}/fd`).length
  } catch {
    return null
  }
}

/** Pids of the process group `pgid` (a child of spawnChild leads its own), from /proc; [pgid] when /proc has none. */
export function groupPids(pgid: number): number[] {
  const pids: number[] = []
  let names: string[]
  try {
    names = readdirSync('/proc').filter((name) => /^\d+$/.test(name))
  } catch {
    return [pgid]
  }
  for (const name of names) {
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      // proc(5): after the name's closing parenthesis come state (3), ppid (4), pgrp (5).
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (fields[0] !== 'Z' && Number(fields[2]) === pgid) pids.push(Number(name))
    } catch {
      // exited meanwhile
    }
  }
  return pids.length === 0 ? [pgid] : pids
}

/**
 * The value of every unlabelled sample, and of labelled ones summed per name, from Prometheus text format.
 * Enough for the gauges read here; histograms' `_bucket` lines sum to nonsense and are not asked for.
 */
export function parseMetricSums(text: string): Map<string, number> {
  const sums = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const brace = line.indexOf('{')
    const space = brace >= 0 ? line.indexOf(' ', line.indexOf('}', brace)) : line.indexOf(' ')
    if (space < 0) continue
    const name = line.slice(0, brace >= 0 ? brace : space)
    const value = Number(line.slice(space + 1).trim().split(' ')[0])
    if (!Number.isFinite(value)) continue
    sums.set(name, (sums.get(name) ?? 0) + value)
  }
  return sums
}

export class Sampler {
  readonly #pid: number
  readonly #metricsUrl: string
  readonly #startedMs: number
  readonly #isGroup: boolean
  readonly #agent = new Agent({ keepAliveTimeout: 10_000, connections: 1 })
  readonly samples: Sample[] = []
  /** Scrapes that failed, with the last reason: the admin listener should always answer. */
  scrapeFailures = 0
  lastScrapeError: string | null = null

  /** `isGroup`: sum RSS and fds over the process group that `pid` leads (the gateway with --workers). */
  constructor(pid: number, adminUrl: string, startedMs: number, isGroup = false) {
    this.#pid = pid
    this.#isGroup = isGroup
    this.#metricsUrl = `${adminUrl}/metrics`
    this.#startedMs = startedMs
  }

  /** One sample, kept for the fit. */
  async sample(): Promise<Sample> {
    const t = (Date.now() - this.#startedMs) / 1000
    const sample = { t, values: await this.read() }
    this.samples.push(sample)
    return sample
  }

  /** The figures now, not kept (the at-rest checks before and after the traffic). */
  async read(): Promise<Partial<Record<FigureKey, number>>> {
    const values: Partial<Record<FigureKey, number>> = {}
    let rssKib: number | null = null
    let fds: number | null = null
    for (const pid of this.#isGroup ? groupPids(this.#pid) : [this.#pid]) {
      const rss = readRssKib(pid)
      const open = countFds(pid)
      if (rss !== null) rssKib = (rssKib ?? 0) + rss
      if (open !== null) fds = (fds ?? 0) + open
    }
    if (rssKib !== null) values.rss = rssKib * 1024
    if (fds !== null) values.fds = fds
    try {
      const r = await request(this.#metricsUrl, { dispatcher: this.#agent, signal: AbortSignal.timeout(5_000) })
      const text = await r.body.text()
      if (r.statusCode !== 200) throw new Error(`/metrics answered ${r.statusCode}`)
      const sums = parseMetricSums(text)
      const heap = sums.get('nodejs_heap_size_used_bytes')
      const loop = sums.get('nodejs_eventloop_lag_p99_seconds')
      // The _total gauge is the whole family summed (nodejs_active_handles by type), without the stale
      // per-type children a type that went away would leave.
      const handles = sums.get('nodejs_active_handles_total') ?? sums.get('nodejs_active_handles')
      if (heap !== undefined) values.heap = heap
      if (loop !== undefined) values.loopP99 = loop
      if (handles !== undefined) values.handles = handles
    } catch (error) {
      this.scrapeFailures++
      this.lastScrapeError = error instanceof Error ? error.message : String(error)
    }
    return values
  }

  close(): Promise<void> {
    return this.#agent.close()
  }
}
