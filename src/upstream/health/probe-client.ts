// The health-probe connection of one target: its own undici Client, never the traffic pool, so a probe
// neither waits behind requests nor takes a connection from them (README "Health checks").
//
// undici is loaded on the first probe, not on import: the cluster primary probes for its workers but holds
// no traffic pool, and without active checks it should not pay undici's memory (undici-pool.ts has the
// figures; test/e2e/workers.test.ts checks the primary loads none).
import { createRequire } from 'node:module'
import type { Client } from 'undici'

const require = createRequire(import.meta.url)
let ClientClass: typeof Client | null = null

export type ProbeClient = Client

/** `http2`: the gRPC health protocol (h2c for http://, ALPN h2 for https://), as the traffic pool speaks it. */
export function createProbeClient(origin: string, timeoutMs: number, http2 = false): ProbeClient {
  ClientClass ??= require('undici/lib/dispatcher/client.js') as typeof Client
  return new ClientClass(origin, {
    connect: http2 ? { timeout: timeoutMs, useH2c: origin.startsWith('http:') } as { timeout: number } : { timeout: timeoutMs },
    allowH2: http2,
    headersTimeout: 0,
    bodyTimeout: 0,
    keepAliveTimeout: 4_000,
    pipelining: 1,
  })
}
