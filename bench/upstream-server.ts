// The node:http upstream, used when nginx is not installed.
// node dist/bench/upstream-server.js --port P
// GET /4k -> 4 KiB, GET /1m -> 1 MiB, GET /500 -> status 500 "no", anything else -> "ok". Request bodies are
// read and dropped.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { parseArgs } from 'node:util'
import { FAILURE_BODY, FAILURE_PATH, fillerBody, KIB4_BYTES, MIB1_BYTES, SMALL_BODY } from './lib/bodies.js'

const { values } = parseArgs({ options: { port: { type: 'string' } } })
const port = Number(values.port ?? '0')

const small = Buffer.from(SMALL_BODY)
const kib4 = fillerBody(KIB4_BYTES)
const mib1 = fillerBody(MIB1_BYTES)
const failure = Buffer.from(FAILURE_BODY)

function bodyFor(url: string | undefined): Buffer {
  if (url === '/4k') return kib4
  if (url === '/1m') return mib1
  if (url === FAILURE_PATH) return failure
  return small
}

function answer(req: IncomingMessage, res: ServerResponse): void {
  const body = bodyFor(req.url)
  req.resume()
  req.once('end', () => {
    res.writeHead(req.url === FAILURE_PATH ? 500 : 200, { 'content-type': 'text/plain', 'content-length': body.length })
    res.end(body)
  })
}

const server = createServer({ keepAliveTimeout: 120_000 }, answer)
server.listen(port, '127.0.0.1')
process.once('SIGTERM', () => {
  server.closeAllConnections()
  server.close(() => process.exit(0))
})
