// The gateway under test: in-process (Gateway.start on real sockets) or as a child process of the built CLI.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { onTestFinished } from 'vitest'
import { request as undiciRequest, Agent } from 'undici'
import { Gateway } from '../../src/lifecycle/gateway.js'
import { createLogger } from '../../src/telemetry/log.js'
import { Metrics } from '../../src/telemetry/metrics.js'
import { freePort } from './upstream.js'

export interface Response {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  readonly body: string
  json(): unknown
}

const agent = new Agent({ keepAliveTimeout: 1000 })

export async function httpRequest(url: string, init: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Response> {
  const r = await undiciRequest(url, { method: (init.method ?? 'GET') as 'GET', headers: init.headers, body: init.body, dispatcher: agent })
  const body = await r.body.text()
  return { status: r.statusCode, headers: r.headers, body, json: () => JSON.parse(body) }
}

export interface TestGateway {
  readonly gateway: Gateway
  readonly url: string
  readonly port: number
  readonly adminUrl: string
  readonly configPath: string
  readonly dir: string
  get(path: string, headers?: Record<string, string>): Promise<Response>
  request(path: string, init?: { method?: string; headers?: Record<string, string>; body?: string | Buffer }): Promise<Response>
  admin(path: string): Promise<Response>
  /** Write new config text and wait until the gateway applied or rejected it. */
  rewrite(yaml: string): Promise<'applied' | 'rejected' | 'unchanged'>
  close(): Promise<void>
}

function withListeners(yaml: string, listen: string, admin: string): string {
  return `listen: ${listen}\nadmin: ${admin}\n${yaml}`
}

/** `suite: true`: the caller closes it (afterAll); otherwise it closes when the test finishes. */
export async function startGateway(yaml: string, options: { watch?: boolean; suite?: boolean } = {}): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-test-'))
  const configPath = join(dir, 'routes.yaml')
  writeFileSync(configPath, withListeners(yaml, '127.0.0.1:0', '127.0.0.1:0'))
  const env = { ...process.env, TOLLGATE_LOG_LEVEL: process.env['TOLLGATE_TEST_LOG'] ?? 'silent' }
  const gateway = await Gateway.start({
    configPath, env, log: createLogger(env), watchFile: options.watch ?? false,
    metrics: new Metrics({ defaultMetrics: false }),
  })
  const port = gateway.proxyAddress.port
  const url = `http://127.0.0.1:${port}`
  const adminUrl = `http://127.0.0.1:${gateway.adminAddress!.port}`
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await gateway.shutdown()
    rmSync(dir, { recursive: true, force: true })
  }
  if (options.suite !== true) onTestFinished(close)
  return {
    gateway, url, port, adminUrl, configPath, dir,
    get: (path, headers) => httpRequest(url + path, { headers }),
    request: (path, init) => httpRequest(url + path, init),
    admin: (path) => httpRequest(adminUrl + path),
    async rewrite(text) {
      writeFileSync(configPath, withListeners(text, '127.0.0.1:0', '127.0.0.1:0'))
      return gateway.reload()
    },
    close,
  }
}

export const CLI = resolve(import.meta.dirname, '../../dist/src/cli.js')

export interface GatewayProcess {
  readonly child: ChildProcess
  readonly pid: number
  readonly url: string
  readonly adminUrl: string
  readonly configPath: string
  readonly dir: string
  stdout(): string
  stderr(): string
  /** Resolves when stdout contains `text` (log lines are batched for up to 100 ms); rejects after `timeoutMs`. */
  waitForStdout(text: string, timeoutMs?: number): Promise<void>
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/**
 * The built CLI (or `cli`, a copy of it) as a real process, ready when /readyz answers 200. An `env` value of
 * undefined removes the variable.
 */
export async function spawnGateway(yaml: string, args: string[] = [], env: Record<string, string | undefined> = {}, cli = CLI): Promise<GatewayProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-proc-'))
  const configPath = join(dir, 'routes.yaml')
  const port = await freePort()
  const adminPort = await freePort()
  writeFileSync(configPath, withListeners(yaml, `127.0.0.1:${port}`, `127.0.0.1:${adminPort}`))
  const child = spawn(process.execPath, [cli, '--config', configPath, ...args], {
    env: { ...process.env, TOLLGATE_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout!.on('data', (d: Buffer) => { out += d })
  child.stderr!.on('data', (d: Buffer) => { err += d })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })))
  const adminUrl = `http://127.0.0.1:${adminPort}`
  const proc: GatewayProcess = {
    child, pid: child.pid!, url: `http://127.0.0.1:${port}`, adminUrl, configPath, dir,
    stdout: () => out, stderr: () => err, exited,
    waitForStdout(text, timeoutMs = 5_000) {
      if (out.includes(text)) return Promise.resolve()
      return new Promise<void>((resolve, reject) => {
        const onData = (): void => {
          if (!out.includes(text)) return
          clearTimeout(timer)
          child.stdout!.off('data', onData)
          resolve()
        }
        const timer = setTimeout(() => {
          child.stdout!.off('data', onData)
          reject(new Error(`stdout did not show ${JSON.stringify(text)} within ${timeoutMs} ms:\n${out}`))
        }, timeoutMs)
        child.stdout!.on('data', onData)
      })
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    },
  }
  onTestFinished(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
    rmSync(dir, { recursive: true, force: true })
  })
  const deadline = Date.now() + 15_000
  let ready = false
  while (Date.now() < deadline && child.exitCode === null) {
    try {
      const r = await httpRequest(adminUrl + '/readyz')
      if (r.status === 200) { ready = true; break }
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 50))
  }
  if (!ready) throw new Error(`gateway did not become ready:\n${out}\n${err}`)
  return proc
}
