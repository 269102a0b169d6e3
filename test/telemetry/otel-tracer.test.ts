// The span exporter's queue is bounded: with the collector stuck, recording a span never blocks and never
// grows the queue past its size; the spans it cannot hold are dropped and counted.
import { describe, expect, it } from 'vitest'
import { OtelTracer } from '../../src/telemetry/otel-tracer.js'
import type { ServerSpanFacts } from '../../src/telemetry/tracer.js'
import { startOtlpReceiver, type OtlpReceiver } from '../helpers/otlp-receiver.js'

function serverSpan(i: number): ServerSpanFacts {
  const now = performance.now()
  return {
    traceId: i.toString(16).padStart(32, 'a'), spanId: i.toString(16).padStart(16, 'b'), parentSpanId: null, parentIsRemote: true,
    tracestate: null, method: 'GET', routeTemplate: '/x', routeId: 'x', path: '/x', host: 'example.test', clientAddress: '127.0.0.1',
    status: 200, errorType: null, requestId: `r${i}`, startMs: now - 1, endMs: now,
  }
}

/** A tracer exporting to `receiver` (service svc) that has recorded `n` SERVER spans; dropped() counts its drops. */
function tracerWithSpans(receiver: OtlpReceiver, n: number): { tracer: OtelTracer; dropped: () => number } {
  let dropped = 0
  const tracer = new OtelTracer(
    { exporter: 'otlp', endpoint: receiver.endpoint, serviceName: 'svc', sampleRatio: 1, parentBased: true },
    { onDropped: (count) => { dropped += count }, scheduledDelayMs: 5 },
  )
  for (let i = 1; i <= n; i++) tracer.recordServer(serverSpan(i))
  return { tracer, dropped: () => dropped }
}

describe('OtelTracer', () => {
  it('drops and counts the spans its full queue cannot take, without blocking, while the collector hangs', async () => {
    const receiver = await startOtlpReceiver({ mode: 'hang' })
    let dropped = 0
    const tracer = new OtelTracer(
      { exporter: 'otlp', endpoint: receiver.endpoint, serviceName: 't', sampleRatio: 1, parentBased: true },
      { onDropped: (n) => { dropped += n }, maxQueueSize: 4, scheduledDelayMs: 5, exportTimeoutMs: 300 },
    )
    const started = performance.now()
    for (let i = 1; i <= 50; i++) tracer.recordServer(serverSpan(i))
    const tookMs = performance.now() - started
    // The tracer holds finished spans in a list of at most one batch (4 here). The 4th span filled it: its 4
    // SDK spans went to the (stuck) collector; the next 4 wait in the processor's queue; 40 are dropped at
    // once, synchronously; the last 2 are still held by the tracer.
    expect(dropped).toBe(40)
    expect(tookMs).toBeLessThan(1000)
    await tracer.close().catch(() => undefined) // the stuck export times out
    expect(dropped).toBeGreaterThanOrEqual(40)
    expect(receiver.requests).toBeGreaterThanOrEqual(1)
  })

  it('exports every span when the collector keeps up', async () => {
    const receiver = await startOtlpReceiver()
    const { tracer, dropped } = tracerWithSpans(receiver, 50)
    await tracer.close()
    expect(receiver.spans).toHaveLength(50)
    expect(new Set(receiver.spans.map((s) => s.spanId)).size).toBe(50)
    expect(receiver.spans[0]!.resource['service.name']).toBe('svc')
    expect(dropped()).toBe(0)
  })

  it('sends an export again after a 503, as Retry-After says, and drops nothing', async () => {
    const receiver = await startOtlpReceiver({ unavailableFirst: 2 })
    const { tracer, dropped } = tracerWithSpans(receiver, 10)
    const started = performance.now()
    await tracer.close()
    // Retry-After: 0 was followed: without it the two waits would be the backoff's, at least 0.8 s + 1.2 s.
    expect(performance.now() - started).toBeLessThan(1500)
    expect(receiver.requests).toBe(3)
    expect(receiver.spans.map((s) => s.spanId).sort()).toEqual(Array.from({ length: 10 }, (_, i) => serverSpan(i + 1).spanId).sort())
    expect(dropped()).toBe(0)
  })

  it('does not send an export again after a 400: its spans count as dropped', async () => {
    const receiver = await startOtlpReceiver({ mode: 'reject' })
    const { tracer, dropped } = tracerWithSpans(receiver, 10)
    await expect(tracer.close()).rejects.toThrow('the OTLP endpoint answered 400')
    expect(receiver.requests).toBe(1)
    expect(dropped()).toBe(10)
  })
})
