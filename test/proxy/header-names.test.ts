import { describe, expect, it } from 'vitest'
import { HOP_BY_HOP_NAMES, NameKind, knownName } from '../../src/proxy/header-names.js'

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1')

describe('knownName', () => {
  it('finds a table name in any letter case and answers its lower-case constant', () => {
    for (const name of ['server', 'Server', 'SERVER', 'sErVeR']) expect(knownName(bytes(name))?.name).toBe('server')
    expect(knownName(bytes('Content-Length'))?.kind).toBe(NameKind.ContentLength)
    expect(knownName(bytes('CONNECTION'))?.kind).toBe(NameKind.Connection)
    expect(knownName(bytes('Transfer-Encoding'))?.kind).toBe(NameKind.Drop)
    expect(knownName(bytes('X-Frame-Options'))?.kind).toBe(NameKind.Keep)
  })

  it('does not match names outside the table, near misses of the same length, or bytes that only fold alike to a dash', () => {
    expect(knownName(bytes('x-custom'))).toBeNull()
    expect(knownName(bytes('servex'))).toBeNull() // same length as server
    expect(knownName(bytes('dat'))).toBeNull()
    expect(knownName(bytes(''))).toBeNull()
    expect(knownName(bytes('a'.repeat(200)))).toBeNull()
    // 0x0d | 0x20 is '-': a fold that ignored non-letters would take "content\rtype" for content-type.
    expect(knownName(bytes('content\rtype'))).toBeNull()
    expect(knownName(bytes('x\rcache'))).toBeNull() // x-cache
  })


  it('drops every hop-by-hop name from responses', () => {
    for (const name of HOP_BY_HOP_NAMES) {
      const kind = knownName(bytes(name))?.kind
      expect([NameKind.Drop, NameKind.Connection], name).toContain(kind)
    }
  })
})
