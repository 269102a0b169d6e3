// An upgraded WebSocket connection after the 101: two sockets relayed both ways, and the registry of those
// open (README "WebSocket").
//
//   relaying ──either side ends──> half-closed (the end passed on) ──both closed──> closed
//   relaying ──error, or idleTimeout without a byte either way──> closed (both destroyed)
//   relaying ──goAway() (shutdown.timeout passed)──> at the next frame boundary of each direction a close
//             frame 1001, then both ends ──> closed
//
// Bytes are relayed as they come, never decoded; a write that the other side cannot take yet pauses the
// reading side until 'drain' (the same backpressure as stream.pipe). FrameCursor follows the frame
// boundaries only so that goAway() can put its close frames between frames. A tunnel belongs to no route
// table: a reload, even one that removes its route, leaves it open.
import type { Socket } from 'node:net'
import { CLOSE_GOING_AWAY_TO_CLIENT, CLOSE_GOING_AWAY_TO_UPSTREAM, FrameCursor } from './websocket-frames.js'

/** After goAway(), how long the close frames get to be written before the sockets are destroyed. */
const GO_AWAY_GRACE_MS = 1000

export class Tunnel {
  readonly routeId: string
  readonly client: Socket
  readonly upstream: Socket
  /** Where frames end, upstream -> client and client -> upstream. */
  readonly #down = new FrameCursor()
  readonly #up = new FrameCursor()
  #goingAway = false
  #closedSockets = 0
  readonly #registry: Tunnels
  // Bound once per connection (not per message): the relay's listeners.
  readonly #onClientData = (chunk: Buffer): void => this.#relay(chunk, this.#up, this.upstream, this.client, CLOSE_GOING_AWAY_TO_UPSTREAM)
  readonly #onUpstreamData = (chunk: Buffer): void => this.#relay(chunk, this.#down, this.client, this.upstream, CLOSE_GOING_AWAY_TO_CLIENT)
  readonly #onClose = (): void => this.#closed()
  readonly #onError = (): void => this.destroy()

  constructor(registry: Tunnels, routeId: string, client: Socket, upstream: Socket) {
    this.#registry = registry
    this.routeId = routeId
    this.client = client
    this.upstream = upstream
  }

  /**
   * Starts relaying. `clientHead`/`upstreamHead`: bytes each side sent after its handshake, already read
   * (Node hands them over with the 'upgrade' events).
   */
  start(clientHead: Buffer, upstreamHead: Buffer, idleMs: number): void {
    const { client, upstream } = this
    this.#registry.add(this)
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    // Traffic either way touches the client socket (read from it or written to it): one timer covers both.
    client.setTimeout(idleMs, this.#onError)
    upstream.setTimeout(0)
    client.on('error', this.#onError)
    upstream.on('error', this.#onError)
    client.on('close', this.#onClose)
    upstream.on('close', this.#onClose)
    // An end passes on: the other side gets its FIN once what is queued for it is written.
    client.on('end', () => this.#passEnd(upstream, this.#up, CLOSE_GOING_AWAY_TO_UPSTREAM))
    upstream.on('end', () => this.#passEnd(client, this.#down, CLOSE_GOING_AWAY_TO_CLIENT))
    client.on('drain', () => upstream.resume())
    upstream.on('drain', () => client.resume())
    if (upstreamHead.length > 0) this.#onUpstreamData(upstreamHead)
    if (clientHead.length > 0) this.#onClientData(clientHead)
    client.on('data', this.#onClientData)
    upstream.on('data', this.#onUpstreamData)
    client.resume()
    upstream.resume()
  }

  /** shutdown.timeout passed: a close frame 1001 each way at the next frame boundary, then both sides end. */
  goAway(): void {
    if (this.#goingAway) return
    this.#goingAway = true
    if (this.#down.atBoundary) this.#endWith(this.client, CLOSE_GOING_AWAY_TO_CLIENT, this.upstream)
    if (this.#up.atBoundary) this.#endWith(this.upstream, CLOSE_GOING_AWAY_TO_UPSTREAM, this.client)
  }

  destroy(): void {
    this.client.destroy()
    this.upstream.destroy()
  }

  #relay(chunk: Buffer, cursor: FrameCursor, to: Socket, from: Socket, closeFrame: Buffer): void {
    if (!this.#goingAway) {
      cursor.feed(chunk, false)
      if (!to.write(chunk)) from.pause()
      return
    }
    if (!to.writable) return
    // Going away mid-frame: finish that frame, then the close frame; later frames are dropped.
    const end = cursor.feed(chunk, true)
    if (end > 0) to.write(chunk.subarray(0, end))
    if (cursor.atBoundary) this.#endWith(to, closeFrame, from)
  }

  /** The side that feeds `to` ended. Going away, `to` still gets its close frame if it is between frames. */
  #passEnd(to: Socket, cursor: FrameCursor, closeFrame: Buffer): void {
    if (!to.writable) return
    if (this.#goingAway && cursor.atBoundary) to.end(closeFrame)
    else to.end()
  }

  #endWith(to: Socket, closeFrame: Buffer, from: Socket): void {
    if (!to.writable) return
    to.end(closeFrame)
    // Nothing more from the other side is relayed to `to`.
    from.removeListener('data', from === this.client ? this.#onClientData : this.#onUpstreamData)
    from.resume()
  }

  #closed(): void {
    // The first close ends the connection: the other side goes once what is queued for it is written.
    if (++this.#closedSockets === 1) {
      this.#registry.remove(this)
      this.client.destroySoon()
      this.upstream.destroySoon()
    }
  }
}

/** The open tunnels of one process: tollgate_websocket_connections, and shutdown's wait and goAway. */
export class Tunnels {
  readonly #open = new Set<Tunnel>()
  readonly #byRoute = new Map<string, number>()
  #emptyWaiters: Array<() => void> = []

  get size(): number {
    return this.#open.size
  }

  add(tunnel: Tunnel): void {
    this.#open.add(tunnel)
    this.#byRoute.set(tunnel.routeId, (this.#byRoute.get(tunnel.routeId) ?? 0) + 1)
  }

  remove(tunnel: Tunnel): void {
    if (!this.#open.delete(tunnel)) return
    const left = (this.#byRoute.get(tunnel.routeId) ?? 1) - 1
    if (left === 0) this.#byRoute.delete(tunnel.routeId)
    else this.#byRoute.set(tunnel.routeId, left)
    if (this.#open.size === 0 && this.#emptyWaiters.length > 0) {
      const waiters = this.#emptyWaiters
      this.#emptyWaiters = []
      for (const w of waiters) w()
    }
  }

  /** Open connections by route id: every id in `routeIds` (0 when none is open) and any other with some open. */
  counts(routeIds: Iterable<string>): Map<string, number> {
    const out = new Map<string, number>()
    for (const id of routeIds) out.set(id, 0)
    for (const [id, n] of this.#byRoute) out.set(id, n)
    return out
  }

  /** Resolves when no tunnel is open. */
  empty(): Promise<void> {
    if (this.#open.size === 0) return Promise.resolve()
    return new Promise((resolve) => this.#emptyWaiters.push(resolve))
  }

  /**
   * Every tunnel gets its close frames (goAway); those still open after GO_AWAY_GRACE_MS are destroyed.
   * Resolves when all are closed.
   */
  async goAway(): Promise<void> {
    if (this.#open.size === 0) return
    for (const t of this.#open) t.goAway()
    let timer: NodeJS.Timeout | undefined
    const grace = new Promise<void>((resolve) => { timer = setTimeout(resolve, GO_AWAY_GRACE_MS) })
    await Promise.race([this.empty(), grace])
    clearTimeout(timer)
    for (const t of this.#open) t.destroy()
    await this.empty()
  }
}
