import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { runValidate, schemaJson } from '../../src/commands/validate-command.js'

const yaml = (...lines: string[]): string => `${lines.join('\n')}\n`

/** Writes `text` to routes.yaml in a fresh directory and returns its path. */
function routesFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-validate-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'routes.yaml')
  writeFileSync(file, text)
  return file
}

const VALID = [
  'upstreams:',
  '  users: { targets: [{ url: "http://127.0.0.1:9001" }] }',
  '  orders: { targets: [{ url: "http://127.0.0.1:9002" }] }',
  'routes:',
  '  - { id: users, match: { path: /users }, upstream: users }',
  '  - { id: orders, match: { path: /orders }, upstream: orders }',
  '  - { id: order, match: { path: "/orders/:id" }, upstream: orders }',
]

describe('runValidate', () => {
  it('exits 0 with a one-line summary', async () => {
    const file = routesFile(yaml(...VALID))
    expect(await runValidate(file, {})).toEqual({ exitCode: 0, stdout: `${file}: OK — 3 routes, 2 upstreams\n`, stderr: '' })
  })

  it('puts warnings on stderr after the summary', async () => {
    const file = routesFile(yaml(
      ...VALID,
      '  - { id: again, match: { path: "/orders/:orderId" }, upstream: orders, websocket: true }',
    ))
    expect(await runValidate(file, {})).toEqual({
      exitCode: 0,
      stdout: `${file}: OK — 4 routes, 2 upstreams\n`,
      stderr:
        `warning: ${file}:8:5 routes[3]: route "again" can never match: route "order" (${file}:7:5) has the same match and comes first\n`,
    })
  })

  it('exits 1 with every error, one per line as F:line:col path: reason', async () => {
    const file = routesFile(yaml(
      'listen: 0.0.0.0:8080',
      'routes:',
      '  - { id: a, match: { path: /a }, upstream: nowhere, priority: x }',
      '  - { id: b, match: { path: b }, upstream: nowhere }',
    ))
    const result = await runValidate(file, { TOLLGATE_ADMIN: '0.0.0.0' })
    expect(result.exitCode).toBe(1)
    expect(result.stdout).toBe('')
    expect(result.stderr.split('\n')).toEqual([
      'TOLLGATE_ADMIN admin: must be host:port, such as 0.0.0.0:8080 or [::1]:8080, got "0.0.0.0"',
      `${file}:3:45 routes[0].upstream: upstream "nowhere" is not defined; no upstreams are defined`,
      `${file}:3:64 routes[0].priority: must be an integer, got "x"`,
      `${file}:4:29 routes[1].match.path: must be a path starting with /, got "b"`,
      `${file}:4:44 routes[1].upstream: upstream "nowhere" is not defined; no upstreams are defined`,
      `${file}: invalid — 5 errors`,
      '',
    ])
  })

  it('exits 1 for a route whose path the router could never match, at the path\'s file:line:col', async () => {
    const file = routesFile(yaml(...VALID, '  - { id: dots, match: { path: /a/../b }, upstream: users }'))
    expect(await runValidate(file, {})).toEqual({
      exitCode: 1,
      stdout: '',
      stderr: `${file}:8:32 routes[3].match.path: can never match: the segment ".." is a dot segment, and requests with one are refused with 400; write "/b"\n` +
        `${file}: invalid — 1 error\n`,
    })
  })

  it('does not take the variables that steer the process for config overrides', async () => {
    const file = routesFile(yaml(...VALID))
    expect(await runValidate(file, { TOLLGATE_WORKERS: '2', TOLLGATE_CONFIG: file })).toMatchObject({ exitCode: 0, stderr: '' })
  })

  it('exits 1 when the file cannot be read', async () => {
    expect(await runValidate('missing/routes.yaml', {})).toEqual({
      exitCode: 1,
      stdout: '',
      stderr: 'missing/routes.yaml cannot read the config file: no such file\nmissing/routes.yaml: invalid — 1 error\n',
    })
  })
})

describe('schemaJson', () => {
  it('prints the JSON Schema of routes.yaml, ending with a newline', () => {
    const text = schemaJson()
    expect(text.endsWith('}\n')).toBe(true)
    const schema = JSON.parse(text) as { $id: string; properties: Record<string, unknown> }
    expect(schema.$id).toBe('https://tollgate.dev/schema/routes.schema.json')
    expect(Object.keys(schema.properties)).toContain('routes')
  })
})
