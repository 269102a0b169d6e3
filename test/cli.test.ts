// The real `tollgate` binary (README.md "Command line"): what a user types, what they see, and the exit codes.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, describe, expect, it, onTestFinished } from 'vitest'
import { CLI, httpRequest, spawnGateway } from './helpers/gateway.js'
import { freePort, startUpstream } from './helpers/upstream.js'

const root = resolve(import.meta.dirname, '..')
const dir = mkdtempSync(join(tmpdir(), 'tollgate-cli-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function tollgate(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 20_000 })
}

async function untilOk(url: string): Promise<void> {
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline) {
    try {
      if ((await httpRequest(url)).status === 200) return
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`${url} never answered 200`)
}

function file(name: string, text: string): string {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

describe('tollgate validate', () => {
  it('accepts the bundled routes.yaml with a one-line summary', () => {
    const r = tollgate(['validate', join(root, 'routes.yaml')])
    expect(r.status).toBe(0)
    expect(r.stdout.trim().split('\n')).toHaveLength(1)
    expect(r.stdout).toMatch(/OK/)
  })

  it('lists every error as file:line:col path: reason and exits 1', () => {
    const path = file('bad.yaml', [
      'upstreams:',
      '  a: { targets: [{ url: http://127.0.0.1:1 }] }',
      'routes:',
      '  - id: one',
      '    match: { path: /a }',
      '    upstream: missing',
      '  - id: two',
      '    match: { path: /b, mehtods: [GET] }',
      '    upstream: a',
      '',
    ].join('\n'))
    const r = tollgate(['validate', path])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(new RegExp(`${path.replace(/[.]/g, '\\.')}:6:\\d+ routes\\[0\\]\\.upstream: `))
    expect(r.stderr).toMatch(new RegExp(`${path.replace(/[.]/g, '\\.')}:8:\\d+ routes\\[1\\]\\.match\\.mehtods: `))
  })

  it('refuses routes the router could never match, each at file:line:col with the reason, and exits 1', () => {
    const path = file('unreachable.yaml', [
      'upstreams:',
      '  a: { targets: [{ url: http://127.0.0.1:1 }] }',
      'routes:',
      '  - { id: dots, match: { path: /a/../b }, upstream: a }',
      '  - { id: query, match: { path: "/a?x=1" }, upstream: a }',
      '  - { id: accent, match: { path: /caf\u00e9 }, upstream: a }',
      '  - { id: fine, match: { path: /caf%C3%A9 }, upstream: a }',
      '',
    ].join('\n'))
    const r = tollgate(['validate', path])
    expect(r.status).toBe(1)
    expect(r.stdout).toBe('')
    expect(r.stderr.split('\n')).toEqual([
      `${path}:4:32 routes[0].match.path: can never match: the segment ".." is a dot segment, and requests with one are refused with 400; write "/b"`,
      `${path}:5:33 routes[1].match.path: can never match: "?" starts the query string, and routes match the path only (the query passes unchanged); remove "?x=1", or write %3F for a literal "?"`,
      `${path}:6:34 routes[2].match.path: can never match: requests with raw non-ASCII characters are refused with 400 (clients send them percent-encoded as UTF-8); write "/caf%C3%A9"`,
      `${path}: invalid — 3 errors`,
      '',
    ])
  })

  it('reports settings whose behaviour is not enforced yet', () => {
    const path = file('later.yaml', `
upstreams:
  a: { targets: [{ url: http://127.0.0.1:1 }] }
routes:
  - id: limited
    match: { path: /a }
    upstream: a
    circuitBreaker: {}
`)
    const r = tollgate(['validate', path])
    expect(r.status).toBe(0)
    expect(r.stderr).toMatch(/routes\[0\]\.circuitBreaker .*not enforced yet/)
  })

  it('honours TOLLGATE_* overrides and rejects one that names no setting', () => {
    const path = join(root, 'routes.yaml')
    expect(tollgate(['validate', path], { TOLLGATE_LIMITS_MAXBODYSIZE: '2MiB' }).status).toBe(0)
    const bad = tollgate(['validate', path], { TOLLGATE_LIMITS_MAXBODYSIZ: '2MiB' })
    expect(bad.status).toBe(1)
    expect(bad.stderr).toContain('TOLLGATE_LIMITS_MAXBODYSIZ')
  })
})

describe('tollgate schema', () => {
  it('prints the committed JSON Schema', () => {
    const r = tollgate(['schema'])
    expect(r.status).toBe(0)
    expect(r.stdout).toBe(readFileSync(join(root, 'schema/routes.schema.json'), 'utf8'))
  })
})

describe('tollgate (run)', () => {
  it('refuses to start on an invalid file, naming every error, exit 1', () => {
    const path = file('broken.yaml', 'listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nroutes:\n  - id: x\n    match: { path: nope }\n    upstream: y\n')
    const r = tollgate(['--config', path])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/broken\.yaml:5:\d+ routes\[0\]\.match\.path: /)
    expect(r.stderr).toMatch(/broken\.yaml:6:\d+ routes\[0\]\.upstream: /)
  })

  it('logs settings that are not enforced yet at start-up', async () => {
    const up = await startUpstream()
    const gw = await spawnGateway(`
upstreams:
  a: { targets: [{ url: ${up.url} }], healthCheck: { passive: {} } }
routes:
  - { id: a, match: { path: /* }, upstream: a, circuitBreaker: {}, tracing: { sampleRatio: 1 } }
`)
    const stopped = await gw.stop()
    expect(stopped.code).toBe(0)
    expect(gw.stdout()).toMatch(/circuitBreaker.*not enforced yet/)
    expect(gw.stdout()).toMatch(/tracing.*not enforced yet/)
    expect(gw.stdout()).not.toMatch(/healthCheck.*not enforced/)
  })

  it('--listen and --admin override the file', async () => {
    const up = await startUpstream({ body: 'via flags' })
    const port = await freePort()
    const adminPort = await freePort()
    const path = file('flags.yaml', `
listen: 127.0.0.1:1
admin: 127.0.0.1:2
upstreams:
  a: { targets: [{ url: ${up.url} }] }
routes:
  - { id: a, match: { path: /* }, upstream: a }
`)
    const child = spawn(process.execPath, [CLI, '--config', path, '--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${adminPort}`], { stdio: 'ignore' })
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
    onTestFinished(() => { child.kill('SIGKILL') })
    await untilOk(`http://127.0.0.1:${adminPort}/readyz`)
    const r = await httpRequest(`http://127.0.0.1:${port}/x`)
    expect(r.status).toBe(200)
    expect(r.body).toBe('via flags')
    child.kill('SIGTERM')
    expect(await exited).toBe(0)
  })

  it('rejects a bad --workers value with exit 2', () => {
    const r = tollgate(['--config', join(root, 'routes.yaml'), '--workers', 'zero'])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('--workers')
  })

  it('answers unknown commands with usage and exit 2', () => {
    const r = tollgate(['frobnicate'])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('usage:')
  })

  it('runs through npx from the project directory', () => {
    const r = spawnSync('npx', ['tollgate', 'validate', 'routes.yaml'], { cwd: root, encoding: 'utf8', timeout: 60_000 })
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('OK')
  }, 90_000) // npx takes tens of seconds on a loaded machine; the spawn's own 60 s bound comes first
})
