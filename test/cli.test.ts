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

  it('no longer reports websocket as not enforced (WebSocket routes work)', () => {
    const path = file('later.yaml', `
upstreams:
  a: { targets: [{ url: http://127.0.0.1:1 }] }
routes:
  - id: limited
    match: { path: /a }
    upstream: a
    websocket: true
`)
    const r = tollgate(['validate', path])
    expect(r.status).toBe(0)
    expect(r.stderr).not.toMatch(/websocket/)
    expect(r.stderr).not.toMatch(/not enforced/)
  })

  it('honours TOLLGATE_* overrides, warns about one that names no setting and refuses a bad value', () => {
    const path = join(root, 'routes.yaml')
    expect(tollgate(['validate', path], { TOLLGATE_LIMITS_MAXBODYSIZE: '2MiB' }).status).toBe(0)
    const typo = tollgate(['validate', path], { TOLLGATE_LIMITS_MAXBODYSIZ: '2MiB', TOLLGATE_SERVICE_HOST: '10.0.0.1' })
    expect(typo.status).toBe(0)
    expect(typo.stderr).toContain('TOLLGATE_LIMITS_MAXBODYSIZ')
    expect(typo.stderr).not.toContain('TOLLGATE_SERVICE_HOST')
    const bad = tollgate(['validate', path], { TOLLGATE_LIMITS_MAXBODYSIZE: 'huge' })
    expect(bad.status).toBe(1)
    expect(bad.stderr).toContain('TOLLGATE_LIMITS_MAXBODYSIZE')
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

  it('logs no setting as not enforced at start-up (websocket, healthCheck, circuitBreaker all are)', async () => {
    const up = await startUpstream()
    const gw = await spawnGateway(`
upstreams:
  a: { targets: [{ url: ${up.url} }], healthCheck: { passive: {} } }
routes:
  - { id: a, match: { path: /* }, upstream: a, websocket: true }
`)
    const stopped = await gw.stop()
    expect(stopped.code).toBe(0)
    expect(gw.stdout()).not.toMatch(/websocket.*not supported yet/)
    expect(gw.stdout()).not.toMatch(/healthCheck.*not enforced/)
    expect(gw.stdout()).not.toMatch(/circuitBreaker.*not enforced/)
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

describe('what an operator types wrong (issue 14 item 3)', () => {
  it('validates the file TOLLGATE_CONFIG names, as the gateway would run it', () => {
    const bad = file('elsewhere.yaml', 'listen: nope\n')
    const r = tollgate(['validate'], { TOLLGATE_CONFIG: bad })
    expect(r.status).toBe(1)
    expect(r.stderr).toContain(`${bad}:1:9 listen:`)
  })

  it('answers --help and --version with exit 0', () => {
    const help = tollgate(['--help'])
    expect(help.status).toBe(0)
    expect(help.stdout).toMatch(/^usage:/)
    const version = tollgate(['--version'])
    expect(version.status).toBe(0)
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }
    expect(version.stdout.trim()).toBe(`tollgate ${pkg.version}`)
  })

  it('blames a bad --listen on the flag, not on TOLLGATE_LISTEN or the file', () => {
    const r = tollgate(['--config', join(root, 'routes.yaml'), '--listen', 'nope'])
    expect(r.status).toBe(1)
    expect(r.stderr).toContain('--listen listen: must be host:port')
    expect(r.stderr).not.toContain('TOLLGATE_LISTEN')
  })

  it('says in one line that TOLLGATE_LOG_LEVEL is bad, without a stack trace', () => {
    const r = tollgate(['--config', join(root, 'routes.yaml')], { TOLLGATE_LOG_LEVEL: 'loud' })
    expect(r.status).toBe(1)
    expect(r.stderr.trim()).toBe('tollgate: TOLLGATE_LOG_LEVEL: expected one of trace, debug, info, warn, error, fatal, silent, got "loud"')
  })

  it('says in one line that TOLLGATE_LOG_FORMAT is bad, without a stack trace', () => {
    const r = tollgate(['--config', join(root, 'routes.yaml')], { TOLLGATE_LOG_FORMAT: 'xml' })
    expect(r.status).toBe(1)
    expect(r.stderr.trim()).toBe('tollgate: TOLLGATE_LOG_FORMAT: expected one of json, pretty, got "xml"')
  })

  it('names the file, key and allowed values for a bad log: setting, and does not start', () => {
    const file = join(dir, 'bad-log.yaml')
    writeFileSync(file, readFileSync(join(root, 'routes.yaml'), 'utf8') + 'log: { access: yes please }\n')
    const r = tollgate(['--config', file])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/bad-log\.yaml:\d+:\d+ log\.access: must be true or false, got "yes please"\n/)
    expect(r.stderr).not.toMatch(/\n\s+at /)
  })

  it('says in plain words that the config path is a directory or missing', () => {
    const isDir = tollgate(['--config', dir])
    expect(isDir.status).toBe(1)
    expect(isDir.stderr).toContain(`${dir} cannot read the config file: it is a directory; name the routes.yaml file in it`)
    const missing = tollgate(['--config', join(dir, 'nope.yaml')])
    expect(missing.stderr).toContain('cannot read the config file: no such file')
    expect(missing.stderr).not.toMatch(/\n\s+at /)
  })

  it('says which listener found its address in use', async () => {
    const { createServer } = await import('node:net')
    const busy = createServer()
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r))
    onTestFinished(() => new Promise<void>((r) => busy.close(() => r())))
    const port = (busy.address() as { port: number }).port
    const admin = await freePort()
    const proxyBusy = tollgate(['--config', join(root, 'routes.yaml'), '--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${admin}`])
    expect(proxyBusy.status).toBe(1)
    expect(proxyBusy.stderr).toContain(`proxy listener 127.0.0.1:${port} (listen): address already in use`)
    const adminBusy = tollgate(['--config', join(root, 'routes.yaml'), '--listen', `127.0.0.1:${await freePort()}`, '--admin', `127.0.0.1:${port}`])
    expect(adminBusy.status).toBe(1)
    expect(adminBusy.stderr).toContain(`admin listener 127.0.0.1:${port} (admin): address already in use`)
  })
})

describe('signals an operator sends (issue 14 item 5)', () => {
  for (const workers of [1, 2]) {
    it(`SIGHUP reloads the config file and keeps serving${workers > 1 ? ', with --workers 2' : ''}`, async () => {
      const up = await startUpstream()
      const routes = (path: string): string => `upstreams: { api: { targets: [{ url: ${up.url} }] } }\nroutes: [{ id: r, match: { path: ${path} }, upstream: api }]\n`
      const gw = await spawnGateway(routes('/old'), workers > 1 ? ['--workers', String(workers)] : [])
      expect((await httpRequest(`${gw.url}/old`)).status).toBe(200)
      const text = readFileSync(gw.configPath, 'utf8').replace('path: /old', 'path: /new')
      writeFileSync(gw.configPath, text)
      gw.child.kill('SIGHUP') // before the file watch's 200 ms of quiet: the reload is the signal's
      const deadline = Date.now() + 10_000
      while (Date.now() < deadline && !gw.stdout().includes('SIGHUP reload done')) await new Promise((r) => setTimeout(r, 20))
      expect(gw.stdout()).toMatch(/"result":"applied".*"msg":"SIGHUP reload done"/)
      let status = 0
      while (Date.now() < deadline && status !== 200) status = (await httpRequest(`${gw.url}/new`)).status // every worker
      expect(status).toBe(200)
      for (let i = 0; i < 4; i++) expect((await httpRequest(`${gw.url}/new`, { headers: { connection: 'close' } })).status).toBe(200)
      expect(gw.child.exitCode).toBeNull()
      expect((await gw.stop()).code).toBe(0)
    }, 30_000)
  }
})

describe('npm start', () => {
  it('stops the gateway when npm gets SIGTERM (the script execs node, so the signal reaches it)', async () => {
    const [port, admin] = [await freePort(), await freePort()]
    const npm = spawn('npm', ['start'], {
      cwd: root, env: { ...process.env, TOLLGATE_LISTEN: `127.0.0.1:${port}`, TOLLGATE_ADMIN: `127.0.0.1:${admin}`, TOLLGATE_LOG_LEVEL: 'warn' }, stdio: 'ignore',
    })
    const exited = new Promise<void>((r) => npm.once('exit', () => r()))
    const childrenOf = (pid: number): number[] => {
      try {
        return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((p) => p !== '').map(Number)
      } catch {
        return []
      }
    }
    let gateway: number[] = []
    onTestFinished(async () => {
      for (const pid of gateway) try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
      if (npm.exitCode === null && npm.signalCode === null) npm.kill('SIGKILL')
      await exited
    })
    await untilOk(`http://127.0.0.1:${admin}/healthz`)
    gateway = childrenOf(npm.pid!)
    expect(gateway.length).toBeGreaterThan(0)
    npm.kill('SIGTERM')
    await exited
    const deadline = Date.now() + 10_000
    let alive = true
    while (Date.now() < deadline && alive) {
      alive = gateway.some((pid) => { try { process.kill(pid, 0); return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z' } catch { return false } })
      if (alive) await new Promise((r) => setTimeout(r, 50))
    }
    expect(alive).toBe(false)
    await expect(httpRequest(`http://127.0.0.1:${admin}/healthz`)).rejects.toThrow()
  }, 30_000)
})
