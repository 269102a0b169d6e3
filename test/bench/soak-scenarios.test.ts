// The soak's classifier (bench/lib/soak-scenarios.ts) on real responses of the soak's own upstream servers:
// an answer its scenario does not list must come back as a line naming the scenario, status and body.
import { connect } from 'node:net'
import { describe, expect, it, onTestFinished } from 'vitest'
import { brokenScenario, SCENARIOS, unexpectedAnswer, type Scenario } from '../../bench/lib/soak-scenarios.js'
import { parseReply } from '../../bench/lib/soak-traffic.js'
import { startSoakServer, type SoakServer } from '../../bench/lib/soak-upstreams.js'

const scenario = (name: string): Scenario => SCENARIOS.find((s) => s.name === name)!

async function server(name: string, isFailing = false): Promise<SoakServer> {
  const s = await startSoakServer(name, () => isFailing)
  onTestFinished(() => s.close())
  return s
}

/** One raw HTTP/1.1 exchange, read to the end of the connection, through the soak's own parser. */
function exchange(url: string, head: string): Promise<ReturnType<typeof parseReply>> {
  const { port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', reject)
    socket.on('end', () => resolve(parseReply(Buffer.concat(chunks))))
    socket.end(head)
  })
}

describe('the soak\'s expectations', () => {
  it('accepts the healthy upstream\'s answer for ok, and reports the failing one\'s 500 with scenario, status and body', async () => {
    const good = await server('steady-a')
    const bad = await server('flaky', true)
    const fine = await exchange(good.url, 'GET /ok/a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')
    expect(fine).toEqual({ status: 200, code: null, body: 'ok steady-a' })
    expect(unexpectedAnswer(scenario('ok'), fine)).toBeNull()

    const boom = await exchange(bad.url, 'GET /ok/a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')
    expect(unexpectedAnswer(scenario('ok'), boom)).toBe('scenario ok: GET /ok/a got 500 "boom flaky" (expected 200 ok)')
    // The ejection scenario expects exactly that 500 from the failing target.
    expect(unexpectedAnswer(scenario('ejection'), boom)).toBeNull()
  })

  it('checks the gateway\'s error code and who answered, not only the status', () => {
    const breaker = scenario('breaker')
    expect(unexpectedAnswer(breaker, { status: 503, code: 'CIRCUIT_OPEN', body: '{"code":"CIRCUIT_OPEN"}' })).toBeNull()
    expect(unexpectedAnswer(breaker, { status: 503, code: 'NO_HEALTHY_UPSTREAM', body: '{}' }))
      .toBe('scenario breaker: GET /breaker/x got 503 NO_HEALTHY_UPSTREAM "{}" (expected 200 ok | 500 from the failing upstream | 503 CIRCUIT_OPEN)')
    // A 200 from a target that is not this route's is a misroute.
    expect(unexpectedAnswer(scenario('registered'), { status: 200, code: null, body: 'ok steady-a' })).toMatch(/^scenario registered: .* got 200 "ok steady-a"/)
    expect(unexpectedAnswer(scenario('registered'), { status: 200, code: null, body: 'ok instance-2' })).toBeNull()
  })

  it('reads a POST\'s echoed length through chunked framing', async () => {
    const good = await server('steady-b')
    const body = 'x'.repeat(8 * 1024)
    const reply = await exchange(good.url, `POST /ok/slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: ${body.length}\r\n\r\n${body}`)
    expect(unexpectedAnswer(scenario('slow-client'), reply)).toBeNull()
    const chunked = parseReply(Buffer.from('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nok st\r\n9\r\neady-a 12\r\n0\r\n\r\n'))
    expect(chunked.body).toBe('ok steady-a 12')
  })

  it('expects nothing from an aborted upload, and nothing at all from a --break scenario', () => {
    expect(unexpectedAnswer(scenario('abort-upload'), { status: 400, code: 'BAD_REQUEST', body: '' })).toMatch(/\(expected no response\)$/)
    expect(unexpectedAnswer(brokenScenario(scenario('ok')), { status: 200, code: null, body: 'ok steady-a' })).toMatch(/expected 299/)
  })
})
