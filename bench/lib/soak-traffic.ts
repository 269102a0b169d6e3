// The soak's clients: every scenario started at its own steady rate (not as fast as possible, so the
// figures are those of a steady load), each response checked against the scenario's expectations.
// Keep-alive requests go through undici; slow clients and aborts are written by hand on raw sockets, so
// their timing is exactly what the scenario says.
import { connect, type Socket } from 'node:net'
import { Agent, request } from 'undici'
import { failedRequest, unexpectedAnswer, type Answer, type Scenario } from './soak-scenarios.js'

/** No answer within this long is a failure: the gateway's own timeouts are 10 s (headers) and 30 s (request). */
const ANSWER_TIMEOUT_MS = 20_000
/** A scenario with this many requests unanswered skips its next ones (counted) instead of piling up. */
const MAX_IN_FLIGHT = 64
const TICK_MS = 100
/** Failure lines kept for the report; the counts cover all of them. */
const KEPT_FAILURES = 20

export interface ScenarioStats {
  readonly name: string
  sent: number
  skipped: number
  unexpected: number
  /** Responses by status ("no response" for aborts that got none, "error" for failed requests). */
  readonly byStatus: Record<string, number>
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const message = (error: unknown): string => (error instanceof Error ? `${error.message}${error.cause instanceof Error ? ` (${error.cause.message})` : ''}` : String(error))

export class Traffic {
  readonly #host: string
  readonly #port: number
  readonly #scenarios: readonly Scenario[]
  readonly #rateScale: number
  readonly #agent = new Agent({ connections: 32, keepAliveTimeout: 4_000 })
  readonly #credit: number[]
  readonly #inFlight: number[]
  readonly #pending = new Set<Promise<void>>()
  readonly stats: ScenarioStats[]
  readonly failures: string[] = []
  #timer: NodeJS.Timeout | null = null
  #lastTickMs = 0

  constructor(baseUrl: string, scenarios: readonly Scenario[], rateScale: number) {
    const url = new URL(baseUrl)
    this.#host = url.hostname
    this.#port = Number(url.port)
    this.#scenarios = scenarios
    this.#rateScale = rateScale
    this.#credit = scenarios.map(() => 0)
    this.#inFlight = scenarios.map(() => 0)
    this.stats = scenarios.map((s) => ({ name: s.name, sent: 0, skipped: 0, unexpected: 0, byStatus: {} }))
  }

  get unexpectedTotal(): number {
    return this.stats.reduce((sum, s) => sum + s.unexpected, 0)
  }

  get sentTotal(): number {
    return this.stats.reduce((sum, s) => sum + s.sent, 0)
  }

  start(): void {
    this.#lastTickMs = Date.now()
    this.#timer = setInterval(() => this.#tick(), TICK_MS)
  }

  /** Stops starting requests and waits (bounded) for those under way. */
  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
    const deadline = sleep(ANSWER_TIMEOUT_MS + 5_000)
    await Promise.race([Promise.allSettled([...this.#pending]), deadline])
    await this.#agent.close()
  }

  #tick(): void {
    const now = Date.now()
    const seconds = (now - this.#lastTickMs) / 1000
    this.#lastTickMs = now
    this.#scenarios.forEach((scenario, i) => {
      this.#credit[i]! += scenario.ratePerSec * this.#rateScale * seconds
      while (this.#credit[i]! >= 1) {
        this.#credit[i]! -= 1
        if (this.#inFlight[i]! >= MAX_IN_FLIGHT) {
          this.stats[i]!.skipped++
          continue
        }
        this.#launch(i)
      }
    })
  }

  #launch(i: number): void {
    const scenario = this.#scenarios[i]!
    const stats = this.stats[i]!
    stats.sent++
    this.#inFlight[i]!++
    const done = this.#run(scenario)
      .then((answer) => this.#check(scenario, stats, answer))
      .catch((error: unknown) => this.#fail(stats, failedRequest(scenario, message(error)), 'error'))
      .finally(() => {
        this.#inFlight[i]!--
        this.#pending.delete(done)
      })
    this.#pending.add(done)
  }

  #check(scenario: Scenario, stats: ScenarioStats, answer: Answer | null): void {
    const key = answer === null ? 'no response' : String(answer.status)
    if (answer === null) {
      stats.byStatus[key] = (stats.byStatus[key] ?? 0) + 1
      return
    }
    const wrong = unexpectedAnswer(scenario, answer)
    if (wrong === null) stats.byStatus[key] = (stats.byStatus[key] ?? 0) + 1
    else this.#fail(stats, wrong, key)
  }

  #fail(stats: ScenarioStats, line: string, key: string): void {
    stats.byStatus[key] = (stats.byStatus[key] ?? 0) + 1
    stats.unexpected++
    if (this.failures.length < KEPT_FAILURES) this.failures.push(`${new Date().toISOString().slice(11, 23)} ${line}`)
  }

  /** Null: the scenario ended without a response, as aborts do. */
  #run(scenario: Scenario): Promise<Answer | null> {
    switch (scenario.kind) {
      case 'request':
      case 'fresh':
        return this.#request(scenario, scenario.kind === 'fresh')
      case 'slow':
        return this.#slow(scenario)
      case 'abort-upload':
        return this.#abortUpload(scenario)
      case 'abort-download':
        return this.#abortDownload(scenario)
    }
  }

  async #request(scenario: Scenario, isFresh: boolean): Promise<Answer> {
    const r = await request(`http://${this.#host}:${this.#port}${scenario.path}`, {
      method: scenario.method,
      dispatcher: this.#agent,
      reset: isFresh,
      body: scenario.bodyBytes > 0 ? Buffer.alloc(scenario.bodyBytes, 'b') : null,
      headersTimeout: ANSWER_TIMEOUT_MS,
      bodyTimeout: ANSWER_TIMEOUT_MS,
    })
    const body = await r.body.text()
    const code = r.headers['x-tollgate-error']
    return { status: r.statusCode, code: typeof code === 'string' ? code : null, body }
  }

  #socket(): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = connect(this.#port, this.#host)
      socket.once('connect', () => {
        socket.off('error', reject)
        // Writes of a slow client after the gateway closed would emit errors nobody awaits any more.
        socket.on('error', () => { /* reported through the reply, or irrelevant after an abort */ })
        resolve(socket)
      })
      socket.once('error', reject)
    })
  }

  /** Headers one line at a time, then the body in 1 KiB pieces: ~1.5 s in all, well within headersTimeout. */
  async #slow(scenario: Scenario): Promise<Answer> {
    const socket = await this.#socket()
    const reply = readReply(socket)
    reply.catch(() => { /* awaited below; an early failure must not count as unhandled meanwhile */ })
    try {
      const lines = [`${scenario.method} ${scenario.path} HTTP/1.1\r\n`, `host: ${this.#host}:${this.#port}\r\n`,
        'user-agent: soak-slow-client\r\n', `content-length: ${scenario.bodyBytes}\r\n`, 'connection: close\r\n', '\r\n']
      for (const line of lines) {
        socket.write(line)
        await sleep(100)
      }
      const piece = Buffer.alloc(1024, 's')
      for (let sent = 0; sent < scenario.bodyBytes; sent += piece.length) {
        socket.write(piece.subarray(0, Math.min(piece.length, scenario.bodyBytes - sent)))
        await sleep(110)
      }
      return await reply
    } finally {
      socket.destroy()
    }
  }

  /** Announces the whole body, sends half, then destroys the connection; nothing may have come back by then. */
  async #abortUpload(scenario: Scenario): Promise<Answer | null> {
    const socket = await this.#socket()
    let early: Buffer = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => { early = Buffer.concat([early, chunk]) })
    socket.on('error', () => { /* destroyed below */ })
    socket.write(`${scenario.method} ${scenario.path} HTTP/1.1\r\nhost: ${this.#host}:${this.#port}\r\ncontent-length: ${scenario.bodyBytes}\r\n\r\n`)
    socket.write(Buffer.alloc(scenario.bodyBytes / 2, 'a'))
    // Long enough for the gateway to have the request under way towards the upstream.
    await sleep(50)
    socket.destroy()
    return early.length === 0 ? null : parseReply(early)
  }

  /** Reads the head of a 256 KiB response and the first body bytes, then destroys the connection. */
  #abortDownload(scenario: Scenario): Promise<Answer> {
    return this.#socket().then((socket) => new Promise<Answer>((resolve, reject) => {
      let data: Buffer = Buffer.alloc(0)
      const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no response within ${ANSWER_TIMEOUT_MS} ms`)) }, ANSWER_TIMEOUT_MS)
      socket.on('error', (error) => { clearTimeout(timer); reject(error) })
      socket.on('data', (chunk: Buffer) => {
        data = Buffer.concat([data, chunk])
        const headEnd = data.indexOf('\r\n\r\n')
        if (headEnd < 0 || data.length === headEnd + 4) return
        clearTimeout(timer)
        socket.destroy()
        // Only the status and who answered matter here; the body is cut short on purpose.
        const answer = parseReply(data.subarray(0, headEnd + 4))
        resolve({ ...answer, body: '' })
      })
      socket.write(`${scenario.method} ${scenario.path} HTTP/1.1\r\nhost: ${this.#host}:${this.#port}\r\n\r\n`)
    }))
  }
}

/** The whole reply on a `connection: close` socket. */
function readReply(socket: Socket): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    socket.setTimeout(ANSWER_TIMEOUT_MS, () => { socket.destroy(new Error(`no response within ${ANSWER_TIMEOUT_MS} ms`)) })
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.once('error', reject)
    socket.once('end', () => {
      try {
        resolve(parseReply(Buffer.concat(chunks)))
      } catch (error) {
        reject(error)
      }
    })
  })
}

/** Status, x-tollgate-error and body of an HTTP/1.1 response (content-length or chunked framing). */
export function parseReply(raw: Buffer): Answer {
  const headEnd = raw.indexOf('\r\n\r\n')
  if (headEnd < 0) throw new Error(`incomplete response: ${JSON.stringify(raw.toString('latin1').slice(0, 120))}`)
  const [statusLine = '', ...headerLines] = raw.subarray(0, headEnd).toString('latin1').split('\r\n')
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine)
  if (match === null) throw new Error(`not an HTTP response: ${JSON.stringify(statusLine)}`)
  const headers = new Map<string, string>()
  for (const line of headerLines) {
    const colon = line.indexOf(':')
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim())
  }
  let body = raw.subarray(headEnd + 4)
  if (headers.get('transfer-encoding')?.toLowerCase() === 'chunked') body = dechunk(body)
  else if (headers.has('content-length')) body = body.subarray(0, Number(headers.get('content-length')))
  return { status: Number(match[1]), code: headers.get('x-tollgate-error') ?? null, body: body.toString('utf8') }
}

function dechunk(data: Buffer): Buffer {
  const parts: Buffer[] = []
  let at = 0
  for (;;) {
    const eol = data.indexOf('\r\n', at)
    if (eol < 0) break
    const size = parseInt(data.subarray(at, eol).toString('latin1'), 16)
    if (!Number.isFinite(size) || size === 0) break
    parts.push(data.subarray(eol + 2, eol + 2 + size))
    at = eol + 2 + size + 2
  }
  return Buffer.concat(parts)
}
