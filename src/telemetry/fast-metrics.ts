// Counters and histograms for the request path, kept in plain cells and rendered by prom-client's registry
// at scrape time (a registry accepts any object with name/help/type/aggregator/get()).
//
// Why own this: prom-client's bound children re-validate and re-hash their labels on every call. Measured on
// our 2-core machine (node 20): counter child inc() 967 ns, histogram child observe() 730 ns; four per
// request came to ~3.4 us, about 8% of the whole budget of a proxied request at 25k req/s. A cell's inc()
// is a field increment and observe() a bucket search over 14 bounds.
import type { Registry } from 'prom-client'

type Labels = Record<string, string>

interface MetricValue {
  value: number
  labels: Labels
  metricName?: string
}

interface MetricObject {
  name: string
  help: string
  type: 'counter' | 'histogram'
  aggregator: 'sum'
  values: MetricValue[]
}

export class CounterCell {
  value = 0
  /** Counts kept elsewhere (addSource), read at scrape time; null while there are none. */
  #sources: Array<() => number> | null = null
  constructor(readonly labels: Labels) {}
  inc(): void {
    this.value++
  }

  /**
   * A count that its owner keeps in a field of its own, on an object the request path reads anyway (a rate
   * limiter's `admitted`), and that this cell adds to its value when read. It spares the request path a read
   * of the cell, which sits out of the CPU's cache between requests.
   */
  addSource(read: () => number): void {
    (this.#sources ??= []).push(read)
  }

  /** The source's owner goes away: what it counted stays in the cell. */
  dropSource(read: () => number): void {
    const i = this.#sources?.indexOf(read) ?? -1
    if (i < 0) return
    this.value += read()
    this.#sources!.splice(i, 1)
  }

  /** value and what the sources counted. */
  get total(): number {
    let total = this.value
    if (this.#sources !== null) for (const read of this.#sources) total += read()
    return total
  }
}

export class HistogramCell {
  sum = 0
  count = 0
  readonly counts: Float64Array
  constructor(readonly labels: Labels, readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length)
  }
  /** Hot path. */
  observe(value: number): void {
    const bounds = this.bounds
    let i = 0
    while (i < bounds.length && value > bounds[i]!) i++
    if (i < bounds.length) this.counts[i]!++
    this.sum += value
    this.count++
  }
}

abstract class Family<C> {
  readonly #cells = new Map<string, C>()
  constructor(readonly name: string, readonly help: string, readonly labelNames: readonly string[], registers: readonly Registry[]) {
    for (const r of registers) r.registerMetric(this as never)
  }
  protected abstract make(labels: Labels): C

  /** A cell bound to these label values (same order as labelNames); made once, then reused. */
  labels(...values: string[]): C {
    const key = values.join('\u0000')
    let cell = this.#cells.get(key)
    if (cell === undefined) {
      const labels: Labels = {}
      for (let i = 0; i < this.labelNames.length; i++) labels[this.labelNames[i]!] = values[i] ?? ''
      cell = this.make(labels)
      this.#cells.set(key, cell)
    }
    return cell
  }

  remove(...values: string[]): void {
    this.#cells.delete(values.join('\u0000'))
  }

  protected cells(): IterableIterator<C> {
    return this.#cells.values()
  }

  reset(): void {
    this.#cells.clear()
  }
}

export class FastCounter extends Family<CounterCell> {
  readonly type = 'counter'
  readonly aggregator = 'sum'
  protected make(labels: Labels): CounterCell {
    return new CounterCell(labels)
  }
  async get(): Promise<MetricObject> {
    const values: MetricValue[] = []
    for (const c of this.cells()) values.push({ value: c.total, labels: c.labels })
    return { name: this.name, help: this.help, type: 'counter', aggregator: 'sum', values }
  }
}

export class FastHistogram extends Family<HistogramCell> {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly bounds: readonly number[]
  constructor(name: string, help: string, labelNames: readonly string[], bounds: readonly number[], registers: readonly Registry[]) {
    super(name, help, labelNames, registers)
    this.bounds = bounds
  }
  protected make(labels: Labels): HistogramCell {
    return new HistogramCell(labels, this.bounds)
  }
  async get(): Promise<MetricObject> {
    const values: MetricValue[] = []
    for (const c of this.cells()) {
      let cumulative = 0
      for (let i = 0; i < this.bounds.length; i++) {
        cumulative += c.counts[i]!
        values.push({ metricName: `${this.name}_bucket`, labels: { ...c.labels, le: String(this.bounds[i]) }, value: cumulative })
      }
      values.push({ metricName: `${this.name}_bucket`, labels: { ...c.labels, le: '+Inf' }, value: c.count })
      values.push({ metricName: `${this.name}_sum`, labels: c.labels, value: c.sum })
      values.push({ metricName: `${this.name}_count`, labels: c.labels, value: c.count })
    }
    return { name: this.name, help: this.help, type: 'histogram', aggregator: 'sum', values }
  }
}
