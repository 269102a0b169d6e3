// The tunnel on real sockets (two loopback TCP pairs): its close frames 1001 go between frames, never inside
// one, and the registry counts tunnels by route until they close.
import net from 'node:net'
import { describe, expect, it, onTestFinished } from 'vitest'
import { Tunnel, Tunnels } from '../../src/proxy/websocket-tunnel.js'

/** Two connected sockets on 127.0.0.1: [the end the test drives, the end the tunnel gets]. */
async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer({ allowHalfOpen: true })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r))
  const outer = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true })
  const inner = await accepted
  server.close() // no new connections; its callback would wait for these two to close
  onTestFinished(() => { outer.destroy(); inner.destroy() })
  return [outer, inner]
}

/** A server-to-client binary frame with `n` payload bytes of `fill`. */
function frame(n: number, fill: number): Buffer {
  const head = n < 126 ? Buffer.from([0x82, n]) : Buffer.from([0x82, 126, n >> 8, n & 0xff])
  return Buffer.concat([head, Buffer.alloc(n, fill)])
}

/** Everything `socket` receives until the other side ends it. */
function readAll(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  return new Promise((resolve) => socket.once('end', () => resolve(Buffer.concat(chunks))))
}

/** Resolves once `socket` has received `bytes` bytes in all. */
function received(socket: net.Socket, bytes: number): Promise<void> {
  let seen = 0
  return new Promise((resolve) => {
    const onData = (c: Buffer): void => {
      seen += c.length
      if (seen >= bytes) {
        socket.off('data', onData)
        resolve()
      }
    }
    socket.on('data', onData)
  })
}

describe('Tunnel', () => {
  it('on goAway finishes the frame in flight, then sends the close frame 1001 and drops later frames', async () => {
    const [clientPeer, clientSide] = await socketPair()
    const [upstreamPeer, upstreamSide] = await socketPair()
    const tunnels = new Tunnels()
    new Tunnel(tunnels, 'r', clientSide, upstreamSide).start(Buffer.alloc(0), Buffer.alloc(0), 60_000)
    expect(tunnels.counts(['r', 'other'])).toEqual(new Map([['r', 1], ['other', 0]]))
    const toClient = readAll(clientPeer)
    const toUpstream = readAll(upstreamPeer)

    const first = frame(1000, 0x61)
    const half = received(clientPeer, 600)
    upstreamPeer.write(first.subarray(0, 600)) // the upstream is mid-frame
    await half
    const going = tunnels.goAway()
    upstreamPeer.write(Buffer.concat([first.subarray(600), frame(10, 0x62)]))
    const client = await toClient
    // The whole first frame, then the close frame; the second frame never reaches the client.
    expect(client.subarray(0, first.length).equals(first)).toBe(true)
    expect([...client.subarray(first.length)]).toEqual([0x88, 0x02, 0x03, 0xe9])
    // The upstream had nothing in flight from the client: its close frame (masked) came at once.
    expect([...await toUpstream]).toEqual([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe9])
    clientPeer.end()
    upstreamPeer.end()
    await going
    expect(tunnels.size).toBe(0)
    expect(tunnels.counts([])).toEqual(new Map())
  })
})
