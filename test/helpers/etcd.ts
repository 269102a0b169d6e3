// Real etcd for the tests: Debian's `etcd` binary (package etcd-server) on random loopback ports with a
// temporary data directory, stopped by its PID. Also a 3-member cluster, and a TCP proxy that can cut
// the gateway off from etcd without touching etcd.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net, { type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino, type Logger } from 'pino'
import { Agent, request as undiciRequest } from 'undici'
import { onTestFinished } from 'vitest'
import type { EtcdApplyEvent } from '../../src/lifecycle/config-sources.js'
import { Gateway, type GatewayOptions } from '../../src/lifecycle/gateway.js'
import { Metrics } from '../../src/telemetry/metrics.js'
import { httpRequest, type Response } from './gateway.js'
import { freePort } from './upstream.js'

export interface EtcdMember {
  readonly name: string
  readonly endpoint: string
  readonly clientPort: number
  readonly peerPort: number
  readonly dataDir: string
  readonly pid: number
  /** SIGTERM, wait for the exit. */
  stop(): Promise<void>
  /** SIGKILL, wait for the exit. */
  kill(): Promise<void>
  /** Starts it again on the same ports and data directory; resolves when it is healthy. */
  restart(): Promise<void>
  /** SIGSTOP / SIGCONT: etcd frozen with its sockets open. */
  pause(): void
  resume(): void
  readonly isRunning: boolean
  output(): string
}

export interface EtcdServer extends EtcdMember {
  /** `etcdctl --endpoints=<this> ...args`; resolves with stdout, rejects with stderr. */
  ctl(args: readonly string[], env?: Record<string, string>): Promise<string>
  close(): Promise<void>
}

export interface EtcdCluster {
  readonly members: readonly EtcdMember[]
  readonly endpoints: readonly string[]
  /** The member that is leader now (asks etcdctl). */
  leader(): Promise<EtcdMember>
  ctl(args: readonly string[]): Promise<string>
  close(): Promise<void>
}

const ETCD = process.env['ETCD_BIN'] ?? 'etcd'
const ETCDCTL = process.env['ETCDCTL_BIN'] ?? 'etcdctl'

export function etcdctl(endpoints: readonly string[], args: readonly string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(ETCDCTL, [`--endpoints=${endpoints.join(',')}`, '--dial-timeout=2s', '--command-timeout=5s', ...args],
      { env: { ...process.env, ETCDCTL_API: '3', ...env }, timeout: 15_000 }, (err, stdout, stderr) => {
        if (err !== null) reject(new Error(`etcdctl ${args.join(' ')}: ${stderr || err.message}`))
        else resolve(stdout)
      })
  })
}

/** PEM files for an etcd that serves TLS and asks clients for a certificate. */
export interface EtcdTlsFiles {
  readonly ca: string
  readonly cert: string
  readonly key: string
}

interface MemberSpec {
  readonly name: string
  readonly clientPort: number
  readonly peerPort: number
  readonly dataDir: string
  readonly initialCluster: string
  readonly tls?: EtcdTlsFiles
}

function memberArgs(m: MemberSpec): string[] {
  const client = `${m.tls === undefined ? 'http' : 'https'}://127.0.0.1:${m.clientPort}`
  const peer = `http://127.0.0.1:${m.peerPort}`
  return [
    '--name', m.name, '--data-dir', m.dataDir,
    '--listen-client-urls', client, '--advertise-client-urls', client,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
    '--initial-cluster', m.initialCluster, '--initial-cluster-state', 'new', '--initial-cluster-token', `t-${m.initialCluster.length}-${m.initialCluster.slice(-5)}`,
    // Fast elections for the failover tests; no fsync on a throwaway data directory.
    '--heartbeat-interval', '50', '--election-timeout', '500', '--unsafe-no-fsync',
    '--logger', 'zap', '--log-level', 'error', '--log-outputs', 'stderr',
    ...(m.tls === undefined ? [] : ['--cert-file', m.tls.cert, '--key-file', m.tls.key, '--trusted-ca-file', m.tls.ca, '--client-cert-auth']),
  ]
}

async function isHealthy(endpoint: string, tls?: EtcdTlsFiles): Promise<boolean> {
  const dispatcher = tls === undefined ? undefined
    : new Agent({ connect: { ca: readFileSync(tls.ca), cert: readFileSync(tls.cert), key: readFileSync(tls.key) } })
  try {
    const r = await undiciRequest(`${endpoint}/health`, { signal: AbortSignal.timeout(1000), ...(dispatcher === undefined ? {} : { dispatcher }) })
    const body = (await r.body.json()) as { health?: string }
    return body.health === 'true'
  } catch {
    return false
  } finally {
    await dispatcher?.close()
  }
}

async function waitHealthy(endpoint: string, isRunning: () => boolean, timeoutMs = 15_000, tls?: EtcdTlsFiles): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!isRunning()) throw new Error(`etcd at ${endpoint} exited`)
    if (await isHealthy(endpoint, tls)) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`etcd at ${endpoint} not healthy within ${timeoutMs} ms`)
}

function spawnMember(spec: MemberSpec, extraArgs: readonly string[]): EtcdMember {
  let child: ChildProcess
  let out = ''
  let exited: Promise<void>
  const launch = (): void => {
    child = spawn(ETCD, [...memberArgs(spec), ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout!.on('data', (d: Buffer) => { out += d })
    child.stderr!.on('data', (d: Buffer) => { out = (out + d).slice(-20_000) })
    const c = child
    exited = new Promise((r) => c.once('exit', () => r()))
  }
  launch()
  const endpoint = `${spec.tls === undefined ? 'http' : 'https'}://127.0.0.1:${spec.clientPort}`
  const signal = async (sig: NodeJS.Signals): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    if (sig === 'SIGKILL' || sig === 'SIGTERM') {
      try { process.kill(child.pid!, 'SIGCONT') } catch { /* gone */ }
    }
    process.kill(child.pid!, sig)
    await exited
  }
  return {
    name: spec.name, endpoint, clientPort: spec.clientPort, peerPort: spec.peerPort, dataDir: spec.dataDir,
    get pid() { return child.pid! },
    get isRunning() { return child.exitCode === null && child.signalCode === null },
    stop: () => signal('SIGTERM'),
    kill: () => signal('SIGKILL'),
    async restart() {
      await signal('SIGKILL')
      launch()
      await waitHealthy(endpoint, () => child.exitCode === null && child.signalCode === null, 15_000, spec.tls)
    },
    pause: () => { process.kill(child.pid!, 'SIGSTOP') },
    resume: () => { process.kill(child.pid!, 'SIGCONT') },
    output: () => out,
  }
}

/** One etcd. `suite: true`: the caller closes it (afterAll); else it closes when the test finishes. */
export async function startEtcd(options: { suite?: boolean; args?: readonly string[]; tls?: EtcdTlsFiles } = {}): Promise<EtcdServer> {
  for (let attempt = 0; ; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-etcd-'))
    const clientPort = await freePort()
    const peerPort = await freePort()
    const name = `e${clientPort}`
    const member = spawnMember({
      name, clientPort, peerPort, dataDir: join(dir, 'data'), initialCluster: `${name}=http://127.0.0.1:${peerPort}`,
      ...(options.tls === undefined ? {} : { tls: options.tls }),
    }, options.args ?? [])
    try {
      await waitHealthy(member.endpoint, () => member.isRunning, 15_000, options.tls)
    } catch (err) {
      await member.kill()
      rmSync(dir, { recursive: true, force: true })
      if (attempt < 2) continue // a port was taken between freePort() and etcd's bind
      throw new Error(`${(err as Error).message}\n${member.output()}`)
    }
    let closed = false
    const server: EtcdServer = Object.assign(member, {
      ctl: (args: readonly string[], env?: Record<string, string>) => etcdctl([member.endpoint], args, env),
      async close() {
        if (closed) return
        closed = true
        await member.kill()
        rmSync(dir, { recursive: true, force: true })
      },
    })
    if (options.suite !== true) onTestFinished(() => server.close())
    return server
  }
}

/** `size` members on loopback; healthy (a leader elected) when it resolves. */
export async function startEtcdCluster(size = 3, options: { suite?: boolean } = {}): Promise<EtcdCluster> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await tryStartEtcdCluster(size, options)
    } catch (err) {
      // A port was taken between freePort() and etcd's bind (other test files run at the same time).
      if (attempt >= 2) throw err
    }
  }
}

async function tryStartEtcdCluster(size: number, options: { suite?: boolean }): Promise<EtcdCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-etcd-cluster-'))
  const specs: MemberSpec[] = []
  const ports: Array<{ client: number; peer: number }> = []
  for (let i = 0; i < size; i++) ports.push({ client: await freePort(), peer: await freePort() })
  const initialCluster = ports.map((p, i) => `m${i}=http://127.0.0.1:${p.peer}`).join(',')
  for (let i = 0; i < size; i++) {
    specs.push({ name: `m${i}`, clientPort: ports[i]!.client, peerPort: ports[i]!.peer, dataDir: join(dir, `m${i}`), initialCluster })
  }
  const members = specs.map((s) => spawnMember(s, []))
  const endpoints = members.map((m) => m.endpoint)
  let closed = false
  const cluster: EtcdCluster = {
    members,
    endpoints,
    ctl: (args) => etcdctl(endpoints.filter((_, i) => members[i]!.isRunning), args),
    async leader() {
      // Right after a member restarts, an election may still be running: ask again for a while.
      const deadline = Date.now() + 15_000
      for (;;) {
        const running = members.filter((m) => m.isRunning)
        let seen = ''
        try {
          const text = await etcdctl(running.map((m) => m.endpoint), ['endpoint', 'status', '-w', 'json'])
          seen = text
          const list = JSON.parse(text) as Array<{ Endpoint: string; Status: { header: { member_id: number | string }; leader: number | string } }>
          const leader = list.find((s) => String(s.Status.header.member_id) === String(s.Status.leader))
          const member = members.find((m) => m.endpoint === leader?.Endpoint)
          if (member !== undefined) return member
        } catch (err) {
          seen = (err as Error).message
        }
        if (Date.now() > deadline) throw new Error(`no leader within 15 s: ${seen}`)
        await new Promise((r) => setTimeout(r, 100))
      }
    },
    async close() {
      if (closed) return
      closed = true
      await Promise.all(members.map((m) => m.kill()))
      rmSync(dir, { recursive: true, force: true })
    },
  }
  try {
    await Promise.all(members.map((m) => waitHealthy(m.endpoint, () => m.isRunning)))
  } catch (err) {
    const logs = members.map((m) => `${m.name}: ${m.output().slice(-2000)}`).join('\n')
    await cluster.close()
    throw new Error(`${(err as Error).message}\n${logs}`)
  }
  if (options.suite !== true) onTestFinished(() => cluster.close())
  return cluster
}

export interface TcpProxy {
  readonly port: number
  readonly endpoint: string
  /** Drops every connection and refuses new ones until restore(). */
  cut(): void
  restore(): void
  close(): Promise<void>
}

/** A loopback TCP forwarder to `targetPort`, to cut a client off from etcd while etcd runs on. */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>()
  let isCut = false
  const server = net.createServer((client) => {
    if (isCut) return void client.destroy()
    const upstream = net.connect(targetPort, '127.0.0.1')
    sockets.add(client)
    sockets.add(upstream)
    const drop = (): void => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as net.AddressInfo).port
  let closed = false
  const proxy: TcpProxy = {
    port,
    endpoint: `http://127.0.0.1:${port}`,
    cut() {
      isCut = true
      for (const s of sockets) s.destroy()
      sockets.clear()
    },
    restore() {
      isCut = false
    },
    async close() {
      if (closed) return
      closed = true
      proxy.cut()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
  onTestFinished(() => proxy.close())
  return proxy
}

export interface LogLine {
  readonly level: number
  readonly msg: string
  readonly [field: string]: unknown
}

export interface CapturedLog {
  readonly logger: Logger
  readonly lines: LogLine[]
  /** Resolves with the first line (already written or to come) that `match` accepts. */
  next(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>
}

/** A pino logger that keeps every line, for asserting on what the gateway said. */
export function captureLog(): CapturedLog {
  const lines: LogLine[] = []
  const waiters: Array<{ match: (line: LogLine) => boolean; resolve: (line: LogLine) => void }> = []
  const logger = pino({ level: process.env['TOLLGATE_TEST_LOG'] === undefined ? 'info' : 'debug' }, {
    write(text: string) {
      const line = JSON.parse(text) as LogLine
      lines.push(line)
      if (process.env['TOLLGATE_TEST_LOG'] !== undefined) process.stderr.write(text)
      for (const w of [...waiters]) {
        if (w.match(line)) {
          waiters.splice(waiters.indexOf(w), 1)
          w.resolve(line)
        }
      }
    },
  })
  return {
    logger,
    lines,
    next(match, timeoutMs = 20_000) {
      const seen = lines.find(match)
      if (seen !== undefined) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1)
          reject(new Error(`no matching log line within ${timeoutMs} ms; last lines:\n${lines.slice(-10).map((l) => JSON.stringify(l)).join('\n')}`))
        }, timeoutMs)
        const waiter = { match, resolve: (line: LogLine) => { clearTimeout(timer); resolve(line) } }
        waiters.push(waiter)
      })
    },
  }
}

/** Resolves with the first emission of `event` whose arguments `match` accepts. */
export function nextEvent<T extends unknown[]>(emitter: { on(event: string, f: (...args: T) => void): unknown; off(event: string, f: (...args: T) => void): unknown },
  event: string, match: (...args: T) => boolean = () => true, timeoutMs = 20_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener)
      reject(new Error(`no matching "${event}" event within ${timeoutMs} ms`))
    }, timeoutMs)
    const listener = (...args: T): void => {
      if (!match(...args)) return
      clearTimeout(timer)
      emitter.off(event, listener)
      resolve(args)
    }
    emitter.on(event, listener)
  })
}

export interface EtcdTestGateway {
  readonly gateway: Gateway
  readonly url: string
  readonly adminUrl: string
  readonly configPath: string
  readonly dir: string
  readonly log: CapturedLog
  get(path: string, headers?: Record<string, string>): Promise<Response>
  admin(path: string): Promise<Response>
  /** Resolves after the gateway dealt with a change from etcd that `match` accepts. */
  nextEtcd(match?: (e: EtcdApplyEvent) => boolean): Promise<EtcdApplyEvent>
  /** Value of one sample of /metrics (labels must match exactly), or undefined. */
  metric(name: string, labels?: Record<string, string>): Promise<number | undefined>
  close(): Promise<void>
}

/**
 * The gateway in-process on 127.0.0.1:0 with routes.yaml text that has an `etcd:` section. Waits for the
 * first full etcd read unless `ready: false`. The snapshot goes to the temp dir unless the yaml names one.
 */
export async function startEtcdGateway(yaml: string, options: { ready?: boolean; etcdTuning?: GatewayOptions['etcdTuning'] } = {}): Promise<EtcdTestGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-etcd-gw-'))
  const configPath = join(dir, 'routes.yaml')
  writeFileSync(configPath, `listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n${yaml.replaceAll('$DIR', dir)}`)
  const log = captureLog()
  const gateway = await Gateway.start({
    configPath, env: {}, log: log.logger, watchFile: false, metrics: new Metrics({ defaultMetrics: false }),
    etcdTuning: { retryCapMs: 500, ...options.etcdTuning },
  })
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await gateway.shutdown()
    rmSync(dir, { recursive: true, force: true })
  }
  onTestFinished(close)
  if (options.ready !== false && gateway.etcd !== null && !gateway.etcd.isReady) await nextEvent(gateway.etcd.events, 'ready')
  const url = `http://127.0.0.1:${gateway.proxyAddress.port}`
  const adminUrl = `http://127.0.0.1:${gateway.adminAddress!.port}`
  return {
    gateway, url, adminUrl, configPath, dir, log, close,
    get: (path, headers) => httpRequest(url + path, headers === undefined ? {} : { headers }),
    admin: (path) => httpRequest(adminUrl + path),
    async nextEtcd(match = (e) => e.applied) {
      const [event] = await nextEvent<[EtcdApplyEvent]>(gateway.events, 'etcd', match)
      return event
    },
    async metric(name, labels = {}) {
      const text = (await httpRequest(`${adminUrl}/metrics`)).body
      const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',')
      for (const line of text.split('\n')) {
        const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line)
        if (m === null || m[1] !== name) continue
        const have = (m[2] ?? '').split(',').filter((s) => s !== '').sort().join(',')
        if (have === wanted) return Number(m[3])
      }
      return undefined
    },
  }
}

/**
 * A CA, an etcd server certificate for 127.0.0.1 and a client certificate, made with openssl in `dir`.
 * Returns the server's files (tls) and the client's (client).
 */
export function makeEtcdCertificates(dir: string): { server: EtcdTlsFiles; client: EtcdTlsFiles } {
  const run = (args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
  }
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n')
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n')
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=tollgate-test-ca'])
  for (const name of ['server', 'client']) {
    run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', `/CN=${name === 'server' ? '127.0.0.1' : 'tollgate'}`])
    run(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`])
  }
  const files = (name: string): EtcdTlsFiles => ({ ca: join(dir, 'ca.pem'), cert: join(dir, `${name}.pem`), key: join(dir, `${name}-key.pem`) })
  return { server: files('server'), client: files('client') }
}
