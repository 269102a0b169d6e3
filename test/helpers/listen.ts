// A test server on 127.0.0.1 at a random port, closed (its connections first) when the test finishes, or by
// the caller for a server that serves a whole suite.
import type http from 'node:http'
import type { AddressInfo } from 'node:net'
import { onTestFinished } from 'vitest'

export async function listenForTest(server: http.Server, suite = false): Promise<{ port: number, close: () => Promise<void> }> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    server.closeAllConnections()
    await new Promise<void>((r) => server.close(() => r()))
  }
  if (!suite) onTestFinished(close)
  return { port, close }
}
