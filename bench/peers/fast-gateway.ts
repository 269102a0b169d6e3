// fast-gateway 3.4.7 from npm (restana + fast-proxy-lite) with one catch-all route.
// node dist/bench/peers/fast-gateway.js --port P --upstream http://127.0.0.1:U
import gateway from 'fast-gateway'
import { exitOnSigterm, parsePeerArgs } from '../lib/peer-args.js'

const { port, upstream } = parsePeerArgs()
// An empty prefix registers the route as `/*`, which also matches `/`.
const service = gateway({ routes: [{ prefix: '', target: upstream }] })
await service.start(port, '127.0.0.1')
exitOnSigterm(() => service.close())
