// fastify + @fastify/http-proxy (reply-from over undici) with their defaults: the usual way to build a
// gateway on fastify, and the baseline of the peers' table (bench/README.md "Peers").
// node dist/bench/peers/fastify-http-proxy.js --port P --upstream http://127.0.0.1:U
import Fastify from 'fastify'
import httpProxy from '@fastify/http-proxy'
import { exitOnSigterm, parsePeerArgs } from '../lib/peer-args.js'

const { port, upstream } = parsePeerArgs()
const app = Fastify({ logger: false })
await app.register(httpProxy, { upstream })
await app.listen({ port, host: '127.0.0.1' })
exitOnSigterm(() => app.close())
