import { describe, expect, it } from 'vitest'
import { Target } from '../../src/upstream/target.js'

describe('Target', () => {
  it.each([
    ['http://127.0.0.1:9001', 'http://127.0.0.1:9001', '127.0.0.1:9001', 'http://127.0.0.1:9001'],
    ['http://127.0.0.1:9001/', 'http://127.0.0.1:9001', '127.0.0.1:9001', 'http://127.0.0.1:9001'],
    ['http://api.internal', 'http://api.internal:80', 'api.internal:80', 'http://api.internal'],
    ['https://API.internal', 'https://api.internal:443', 'api.internal:443', 'https://api.internal'],
    ['http://[::1]:8080', 'http://[::1]:8080', '[::1]:8080', 'http://[::1]:8080'],
  ])('parses %s into url, host:port label and origin', (input, url, hostPort, origin) => {
    const target = new Target(input, 1)
    expect({ url: target.url, hostPort: target.hostPort, origin: target.origin }).toEqual({ url, hostPort, origin })
  })

  it('starts healthy, idle, open and without a dispatcher', () => {
    const target = new Target('http://127.0.0.1:9001', 3)
    expect({ weight: target.weight, inflight: target.inflight, healthy: target.healthy, closing: target.closing, dispatcher: target.dispatcher })
      .toEqual({ weight: 3, inflight: 0, healthy: true, closing: false, dispatcher: null })
  })

  it.each(['ftp://h:21', 'http://u:p@h:80', 'http://h:80/api', 'http://h:80/?q=1', 'not a url'])('rejects %s', (url) => {
    expect(() => new Target(url, 1)).toThrow(/target url/)
  })

  it.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY])('rejects weight %s', (weight) => {
    expect(() => new Target('http://h:80', weight)).toThrow(/target weight/)
  })

  it('changes weight through reweight only to a valid value', () => {
    const target = new Target('http://h:80', 1)
    target.reweight(4)
    expect(target.weight).toBe(4)
    expect(() => target.reweight(0)).toThrow(/target weight/)
  })
})
