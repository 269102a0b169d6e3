// `npm run demo`: the gateway on the bundled routes.yaml plus two small example upstream services, so the
// curl commands printed at the end work on a fresh machine. Ctrl-C stops everything.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Gateway } from './lifecycle/gateway.js'
import { handleShutdownSignals } from './lifecycle/signals.js'

function service(name: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = JSON.stringify({
        service: name,
        method: req.method,
        path: req.url,
        received: {
          host: req.headers.host,
          'x-forwarded-for': req.headers['x-forwarded-for'],
          'x-request-id': req.headers['x-request-id'],
          traceparent: req.headers['traceparent'],
        },
        bodyBytes: Buffer.concat(chunks).length,
      }, null, 2) + '\n'
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
  })
  return new Promise((ok, fail) => {
    server.once('error', fail)
    server.listen(port, '127.0.0.1', () => ok(server))
  })
}

async function main(): Promise<void> {
  // DEMO_PORTS=0 (test/demo.test.ts): every listener on a port the system picks, so a machine where 8080
  // or 9001 is taken still runs the demo; the services' URLs in the config are pointed at their ports, and
  // the file is not watched (a reload would read the fixed URLs back).
  const anyPort = process.env['DEMO_PORTS'] === '0'
  const users = await service('users', anyPort ? 0 : 9001)
  const orders = await service('orders', anyPort ? 0 : 9002)
  const up = (s: http.Server): number => (s.address() as AddressInfo).port
  let configPath = resolve(process.env['TOLLGATE_CONFIG'] ?? 'routes.yaml')
  if (anyPort) {
    // A copy of the bundled config pointed at the services' ports, in a directory of its own.
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-demo-'))
    const text = readFileSync(configPath, 'utf8')
      .replaceAll('http://127.0.0.1:9001', `http://127.0.0.1:${up(users)}`)
      .replaceAll('http://127.0.0.1:9002', `http://127.0.0.1:${up(orders)}`)
    configPath = join(dir, 'routes.yaml')
    writeFileSync(configPath, text)
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
  }
  const gateway = await Gateway.start(anyPort
    ? { configPath, env: { ...process.env, TOLLGATE_LISTEN: '127.0.0.1:0', TOLLGATE_ADMIN: '127.0.0.1:0' }, watchFile: false }
    : { configPath })
  const p = gateway.proxyAddress.port
  const a = gateway.adminAddress?.port
  process.stdout.write(`
Tollgate demo: gateway on http://127.0.0.1:${p}, admin on http://127.0.0.1:${a}
example services: users on :${up(users)}, orders on :${up(orders)}. Try:

  curl -i http://127.0.0.1:${p}/api/users/42                 # routed, rewritten to /users/42
  curl -i -X POST http://127.0.0.1:${p}/api/users/42         # 405 with Allow
  curl -i http://127.0.0.1:${p}/api/orders/7?expand=items    # prefix /api stripped, query kept
  curl -i http://127.0.0.1:${p}/nowhere                      # 404 ROUTE_NOT_FOUND
  curl -i --path-as-is http://127.0.0.1:${p}/api/users/../admin   # 400: dot segments never pass
  curl -i http://127.0.0.1:${p}/api/users/a%2Fb              # 400: encoded slash not allowed here
  curl -s http://127.0.0.1:${a}/status                       # config revision, routes, targets
  curl -s http://127.0.0.1:${a}/metrics | grep tollgate_     # Prometheus metrics

Edit routes.yaml while it runs: valid changes apply live, invalid ones are logged and rejected.
Ctrl-C drains and stops.
`)
  await handleShutdownSignals(() => gateway.shutdown(), gateway.log).exitCode
  users.close()
  orders.close()
  users.closeAllConnections()
  orders.closeAllConnections()
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`demo: ${(err as Error).message}\n`)
  process.exit(1)
})
