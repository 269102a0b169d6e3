// One client connection: the order in which its requests are processed, and its end after a refusal
// (README "Headers", "Pipelining and refusals"; issue 14 item 9).
//
// Node's parser dispatches every request of a read at once: `POST ... Transfer-Encoding: gzip, chunked`
// followed by `GET /public/smuggled` in one packet reaches the 'request' handler twice, the second time
// right after the first was refused. A front proxy that framed the bytes differently sent only one request,
// so forwarding the second is request smuggling. Hence:
//   - Requests of one connection are processed one at a time, in order. A pipelined request waits until the
//     one before it has completed (its answer is decided): responses go out in that order anyway.
//   - Once a request is refused with `Connection: close`, `closing` is set and nothing more from the
//     connection is processed; Node closes it once that response is flushed.
//   - A parse error after complete requests (junk after the last one) does not kill the responses already
//     due: they are answered, the last with `Connection: close`, then the connection closes. A parse error
//     inside a body (broken chunk framing) refuses that request with 400 when no response has started.
// Cost: one object per connection; a request that is not pipelined touches two fields.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { BAD_BODY_FRAMING } from '../errors.js'
import { Exchange, refuseInProgress } from './exchange.js'
import { startExchange } from './pipeline.js'
import type { ProxyState } from './proxy-state.js'

const kConnection = Symbol('tollgate.connection')

type WithConnection = Socket & { [kConnection]?: ClientConnection }

export class ClientConnection {
  readonly state: ProxyState
  readonly socket: Socket
  /** The request being processed; null when none. */
  current: Exchange | null = null
  /** Pipelined requests waiting for `current`, flat: req, res, sendContinue, ... (null until one waits). */
  waiting: Array<IncomingMessage | ServerResponse | boolean> | null = null
  /** Nothing more from this connection is processed (a refusal with Connection: close, or a parse error). */
  closing = false
  /** The last request Node handed over, and its response. */
  lastReq: IncomingMessage | null = null
  lastRes: ServerResponse | null = null
  /** A waiting request whose body framing broke: refused with 400 when its turn comes. */
  brokenReq: IncomingMessage | null = null
  #starting = false

  constructor(state: ProxyState, socket: Socket) {
    this.state = state
    this.socket = socket
  }

  /** A request from Node's parser (the 'request', 'checkContinue' and 'checkExpectation' events). */
  admit(req: IncomingMessage, res: ServerResponse, sendContinue: boolean): void {
    if (this.closing) return // never answered: Node closes the connection after the refusal before it
    this.lastReq = req
    this.lastRes = res
    if (this.current !== null || this.waiting !== null) {
      ;(this.waiting ??= []).push(req, res, sendContinue)
      this.#startWaiting()
      return
    }
    this.#start(req, res, sendContinue)
  }

  /** Called by Exchange.complete(): the next pipelined request may start, unless the connection is closing. */
  done(ex: Exchange): void {
    if (this.current !== ex) return
    this.current = null
    if (ex.closesConnection) {
      this.closing = true
      this.waiting = null
      return
    }
    if (this.waiting !== null) this.#startWaiting()
  }

  /**
   * Node's parser failed (not a timeout). True when handled here: requests already parsed still get their
   * answers; false when nothing is due, and the caller writes a raw 400.
   */
  onParseError(): boolean {
    // Refused with Connection: close: Node closes once that response is flushed; nothing more is parsed.
    if (this.closing) return true
    const req = this.lastReq
    const res = this.lastRes
    if (req === null || res === null || res.writableFinished) return false
    if (!req.complete) {
      // Inside this request's body (chunk framing): the bytes after it are not a request either.
      const ex = this.current
      if (ex !== null && ex.req === req) {
        if (!refuseInProgress(res, BAD_BODY_FRAMING)) this.socket.destroy()
        return true
      }
      if (ex !== null || this.waiting !== null) {
        this.brokenReq = req // still waiting: refused when its turn comes
        return true
      }
    }
    // Junk after complete requests: they are answered, the last with Connection: close, then the connection ends.
    if (!res.headersSent) res.shouldKeepAlive = false
    else res.on('finish', destroySoonAfter)
    return true
  }

  #start(req: IncomingMessage, res: ServerResponse, sendContinue: boolean): void {
    const ex = new Exchange(this.state, req, res)
    ex.connection = this
    this.current = ex
    if (req === this.brokenReq) {
      this.brokenReq = null
      startExchange(ex, sendContinue, BAD_BODY_FRAMING)
    } else {
      startExchange(ex, sendContinue, null)
    }
  }

  // A loop, not recursion: a refusal completes its exchange at once, and thousands may wait.
  #startWaiting(): void {
    if (this.#starting) return
    this.#starting = true
    let w = this.waiting
    while (this.current === null && !this.closing && w !== null && w.length > 0) {
      const req = w.shift() as IncomingMessage
      const res = w.shift() as ServerResponse
      const sendContinue = w.shift() as boolean
      if (w.length === 0) this.waiting = null
      this.#start(req, res, sendContinue)
      w = this.waiting
    }
    this.#starting = false
  }
}

function destroySoonAfter(this: ServerResponse): void {
  this.req.socket.destroySoon()
}

export function attachConnection(state: ProxyState, socket: Socket): ClientConnection {
  const conn = new ClientConnection(state, socket)
  ;(socket as WithConnection)[kConnection] = conn
  return conn
}

export function connectionOf(socket: Socket): ClientConnection | undefined {
  return (socket as WithConnection)[kConnection]
}
