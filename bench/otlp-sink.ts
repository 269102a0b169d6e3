// The OTLP/HTTP receiver of the tracing scenarios: takes every trace export (POST /v1/traces, protobuf) and
// answers 200 with an empty ExportTraceServiceResponse, as a collector that keeps up does. It counts what it
// got (GET /stats: {"exports":N,"bytes":N}) so that the report shows the spans really left the gateway.
// node dist/bench/otlp-sink.js --port P
import { createServer } from 'node:http'
import { parseArgs } from 'node:util'

const { values } = parseArgs({ options: { port: { type: 'string' } } })
let exports = 0
let bytes = 0

const server = createServer({ keepAliveTimeout: 120_000 }, (req, res) => {
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ exports, bytes }))
    return
  }
  req.on('data', (chunk: Buffer) => { bytes += chunk.length })
  req.once('end', () => {
    exports++
    res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 })
    res.end()
  })
})
server.listen(Number(values.port ?? '0'), '127.0.0.1')
process.once('SIGTERM', () => {
  server.closeAllConnections()
  server.close(() => process.exit(0))
})
