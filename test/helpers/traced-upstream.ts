// An upstream service that itself continues the trace, as an instrumented service behind the gateway would:
// OpenTelemetry's W3C propagator extracts the incoming traceparent/tracestate, the service makes its own
// SERVER span under it and exports it over OTLP/HTTP to the same receiver as the gateway.
import { ROOT_CONTEXT, SpanKind, defaultTextMapGetter } from '@opentelemetry/api'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { onTestFinished } from 'vitest'
import { startUpstream, type Upstream } from './upstream.js'

export const UPSTREAM_SERVICE = 'traced-upstream'

export async function startTracedUpstream(endpoint: string, status = 200): Promise<Upstream> {
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': UPSTREAM_SERVICE }),
    spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url: endpoint }))],
  })
  const tracer = provider.getTracer('traced-upstream')
  const propagator = new W3CTraceContextPropagator()
  const up = await startUpstream({
    handler: (req, res) => {
      const parent = propagator.extract(ROOT_CONTEXT, req.headers, defaultTextMapGetter)
      const span = tracer.startSpan('upstream handler', { kind: SpanKind.SERVER }, parent)
      res.writeHead(status, { 'content-type': 'text/plain' })
      res.end('traced')
      span.end()
    },
  })
  onTestFinished(() => provider.shutdown())
  return up
}
