// The load generator of scenario websocket-echo: N WebSocket connections, each a closed loop (send one
// message, wait for its echo, send the next) for the given time. Prints one JSON line: messages, seconds,
// p50/p99 round-trip in microseconds, errors.
// node dist/bench/ws-load.js --url ws://127.0.0.1:P/ws --connections 50 --seconds 10 --size 64
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import { quantile } from './lib/stats.js'

const { values } = parseArgs({ options: {
  url: { type: 'string' }, connections: { type: 'string', default: '50' }, seconds: { type: 'string', default: '10' },
  size: { type: 'string', default: '64' },
} })
if (values.url === undefined) throw new Error('usage: node ws-load.js --url ws://host:port/path [--connections N] [--seconds S] [--size BYTES]')
const url = values.url
const connections = Number(values.connections)
const durationMs = Number(values.seconds) * 1000
const payload = Buffer.alloc(Number(values.size), 0x61)
// Round trips kept for the percentiles: a reservoir of fixed size, so memory does not grow with the run.
const SAMPLE = 100_000
const samples = new Float64Array(SAMPLE)
let sampled = 0
let messages = 0
let errors = 0

async function loop(endAt: number): Promise<void> {
  const ws = new WebSocket(url, { perMessageDeflate: false })
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  await new Promise<void>((resolve) => {
    let sentAt = 0
    const send = (): void => {
      sentAt = performance.now()
      ws.send(payload, { binary: true })
    }
    ws.on('message', () => {
      const rtt = performance.now() - sentAt
      messages++
      if (sampled < SAMPLE) samples[sampled++] = rtt * 1000
      else {
        const j = Math.floor(Math.random() * messages)
        if (j < SAMPLE) samples[j] = rtt * 1000
      }
      if (performance.now() < endAt) send()
      else ws.close()
    })
    ws.on('close', () => resolve())
    ws.on('error', () => { errors++; resolve() })
    send()
  })
}

const started = performance.now()
const endAt = started + durationMs
const results = await Promise.allSettled(Array.from({ length: connections }, () => loop(endAt)))
errors += results.filter((r) => r.status === 'rejected').length
const seconds = (performance.now() - started) / 1000
const sorted = samples.subarray(0, Math.min(sampled, SAMPLE)).sort()
console.log(JSON.stringify({ messages, seconds, p50Us: quantile(sorted, 0.5), p99Us: quantile(sorted, 0.99), errors }))
