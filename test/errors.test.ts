// README's "Error codes" table and the code's catalogue must list the same (status, code) pairs.
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { GATEWAY_ERRORS } from '../src/errors.js'

function readmeRows(): string[] {
  const readme = readFileSync(resolve(import.meta.dirname, '../README.md'), 'utf8')
  const start = readme.indexOf('<!-- error-table:start -->')
  const end = readme.indexOf('<!-- error-table:end -->')
  expect(start, 'README.md lost its error-table markers').toBeGreaterThan(0)
  return readme.slice(start, end).split('\n')
    .map((line) => /^\|\s*(\d{3})\s*\|\s*([A-Z_]+)\s*\|/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => `${m[1]} ${m[2]}`)
}

describe('error codes', () => {
  it('README lists exactly the codes the gateway can answer with, with their status', () => {
    const inCode = GATEWAY_ERRORS.map((e) => `${e.status} ${e.code}`).sort()
    expect(readmeRows().sort()).toEqual(inCode)
  })

  it('every code has one status and one meaning', () => {
    const codes = GATEWAY_ERRORS.map((e) => e.code)
    expect(new Set(codes).size).toBe(codes.length)
    for (const e of GATEWAY_ERRORS) expect(Object.isFrozen(e)).toBe(true)
  })
})
