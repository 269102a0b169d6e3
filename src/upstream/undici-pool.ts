// undici's Pool, loaded on its own. The package index also loads fetch, WebSocket, the cache and their
// WASM; the gateway needs only Pool. Measured (node 20, this machine): import('undici') -> 59.4 MiB RSS,
// import('undici/lib/dispatcher/pool.js') -> 51.1 MiB; bench/README.md "Targets" sets idle RSS <= 80 MiB. undici has no
// `exports` map, so the deep path is public; its types come from the package's own declarations.
import { createRequire } from 'node:module'
import type { Pool as UndiciPool } from 'undici'

const require = createRequire(import.meta.url)

export const Pool = require('undici/lib/dispatcher/pool.js') as typeof UndiciPool
export type Pool = UndiciPool

/**
 * The keep-alive connection pool of one target. `http2` (an upstream with protocol: grpc): HTTP/2 to the
 * target, h2c with prior knowledge for http:// (gRPC servers speak it without an upgrade), ALPN h2 for
 * https://. One HTTP/2 connection carries up to 100 concurrent streams (undici's maxConcurrentStreams);
 * the pool opens another when they are all in use.
 */
export function createTargetPool(origin: string, connectTimeoutMs: number, http2 = false): Pool {
  return new Pool(origin, {
    // useH2c must reach the connector the Pool builds: undici's Client reads it only when it builds its own.
    connect: http2 ? { timeout: connectTimeoutMs, useH2c: origin.startsWith('http:') } as { timeout: number } : { timeout: connectTimeoutMs },
    allowH2: http2,
    // timeouts.response is enforced by the proxy's sweep (src/proxy/response-watch.ts), not undici's timers.
    headersTimeout: 0,
    bodyTimeout: 0,
    keepAliveTimeout: 4_000,
    pipelining: 1,
    strictContentLength: true,
  })
}
