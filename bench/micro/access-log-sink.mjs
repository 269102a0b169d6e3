// The access log's cost per line in a process of its own: AccessLogSink.record (src/proxy/access-log.ts) into
// a logger made by createLogger (src/telemetry/log.ts) whose stdout is a file, as in production, including
// the batched asynchronous writes. It reports process CPU (all threads: the writes run in libuv's pool) per
// line for each round of 20,000 lines; the first rounds warm up the JIT. After `npm run build`:
//
//   node bench/micro/access-log-sink.mjs [dist directory, default ./dist] > /tmp/access.log
//
// The figure in README "Access log" ("Cost") compares two builds of this file's dist argument.
import { resolve } from 'node:path'

const dist = resolve(process.argv[2] ?? 'dist')
const { createLogger } = await import(`${dist}/src/telemetry/log.js`)
const { AccessLogSink } = await import(`${dist}/src/proxy/access-log.js`)
const ROUNDS = Number(process.env.ROUNDS ?? 8)
const LINES = 20_000

const log = createLogger({ TOLLGATE_LOG_LEVEL: 'info' })
const sink = new AccessLogSink(log)
sink.configure({ level: 'info', format: 'json', access: true })
const route = { id: 'r0' }
// 4,096 distinct outcomes shaped like a request's: ids, a target, a duration in ms.
const outcomes = Array.from({ length: 4096 }, (_, i) => ({
  requestId: `c0a8f3e2-1b2c-4d3e-8f4a-${100000000000 + i}`, traceId: `4bf92f3577b34da6a3ce929d0e0e${(4096 + i).toString(16)}`,
  canonicalPath: '/', status: 200, refusal: null, upstreamName: 'up', lastTarget: '127.0.0.1:18090', attempts: 1,
  bytesIn: 0, bytesOut: 2, durationMs: 1.2345678 + i * 1e-6, grpcStatus: -1, consumer: null, httpVersion: '1.1',
}))
const perLine = []
for (let round = 0; round < ROUNDS; round++) {
  const before = process.cpuUsage()
  // In ten slices with a 5 ms pause between them, so the batch timer and the writes run as they do under load.
  for (let slice = 0; slice < 10; slice++) {
    for (let i = 0; i < LINES / 10; i++) sink.record(route, 'GET', outcomes[i & 4095])
    await new Promise((r) => setTimeout(r, 5))
  }
  const used = process.cpuUsage(before)
  perLine.push(((used.user + used.system) / LINES).toFixed(2))
}
process.stderr.write(`access line, process CPU µs per line, rounds of ${LINES}: ${perLine.join(' ')}\n`)
