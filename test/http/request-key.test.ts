// Request keys (hashKey today, rate-limit keys next): one parser, one reader.
import http, { type IncomingMessage } from 'node:http'
import { Socket } from 'node:net'
import { describe, expect, it } from 'vitest'
import { RequestKey } from '../../src/http/request-key.js'

function req(url: string, headers: Record<string, string> = {}): IncomingMessage {
  const r = new http.IncomingMessage(new Socket())
  r.url = url
  r.headers = headers
  return r
}

describe('RequestKey', () => {
  it('reads each kind of part', () => {
    const r = req('/a?user=7&x', { 'x-user': 'alice' })
    expect(new RequestKey('client-ip').valueOf(r, '/a', '10.0.0.1')).toBe('10.0.0.1')
    expect(new RequestKey('path').valueOf(r, '/a', '')).toBe('/a')
    expect(new RequestKey('route').valueOf(r, '/a', '', 'users')).toBe('users')
    expect(new RequestKey('header:X-User').valueOf(r, '/a', '')).toBe('alice')
    expect(new RequestKey('query:user').valueOf(r, '/a', '')).toBe('7')
    expect(new RequestKey('query:x').valueOf(r, '/a', '')).toBe('')
  })

  it('joins several parts so that different requests cannot collide', () => {
    const key = new RequestKey('client-ip,header:x-user')
    const a = key.valueOf(req('/', { 'x-user': 'b' }), '/', '1.2.3.4a')
    const b = key.valueOf(req('/', { 'x-user': 'ab' }), '/', '1.2.3.4')
    expect(a).not.toBe(b)
  })

  it('has no key when a part is missing', () => {
    expect(new RequestKey('header:x-user').valueOf(req('/'), '/', '')).toBeNull()
    expect(new RequestKey('client-ip,query:user').valueOf(req('/?other=1'), '/', '1.1.1.1')).toBeNull()
  })

  it('says whether it needs the client IP', () => {
    expect(new RequestKey('header:x,client-ip').needsClientIp).toBe(true)
    expect(new RequestKey('path').needsClientIp).toBe(false)
  })

  it('rejects a part it does not know', () => {
    expect(() => new RequestKey('body:x')).toThrow(/body:x/)
  })

  it('reads a cookie part from the Cookie header (sticky splits)', () => {
    const key = new RequestKey('cookie:sid')
    const req = { headers: { cookie: 'a=1; sid=abc ; sidx=2' } } as unknown as IncomingMessage
    expect(key.valueOf(req, '/', '')).toBe('abc')
    expect(key.valueOf({ headers: { cookie: 'sidx=2' } } as unknown as IncomingMessage, '/', '')).toBeNull()
    expect(key.valueOf({ headers: {} } as unknown as IncomingMessage, '/', '')).toBeNull()
  })
})
