import { describe, expect, it } from 'vitest'
import { cookieValue } from '../../src/http/cookie.js'

describe('cookieValue', () => {
  it.each([
    ['sid=abc', 'sid', 'abc'],
    ['a=1; sid=abc; b=2', 'sid', 'abc'],
    ['a=1;sid=abc', 'sid', 'abc'],
    ['sidx=1; sid=2', 'sid', '2'],
    ['xsid=1', 'sid', null],
    ['sid=', 'sid', ''],
    ['sid=a=b', 'sid', 'a=b'],
    ['sid="quoted"', 'sid', '"quoted"'],
    ['sid=1; sid=2', 'sid', '1'],
    ['SID=1', 'sid', null],
    ['sid', 'sid', null],
    ['', 'sid', null],
  ] as const)('%j, %s -> %j', (header, name, value) => {
    expect(cookieValue(header, name)).toBe(value)
  })

  it('is null without a Cookie header', () => {
    expect(cookieValue(undefined, 'sid')).toBeNull()
  })
})
