// Real etcd for the tests: Debian's `etcd` binary (package etcd-server) on random loopback ports with a
// temporary data directory, stopped by its PID. Also a 3-member cluster, and a TCP proxy that can cut
// the gateway off from etcd without touching etcd. The processes themselves are bench/lib/etcd.ts's (the
// fault drill starts them too); this file closes them when the test finishes.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net, { type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino, type Logger } from 'pino'
import { onTestFinished } from 'vitest'
import type { EtcdApplyEvent } from '../../src/lifecycle/config-sources.js'
import { Gateway, type GatewayOptions } from '../../src/lifecycle/gateway.js'
import { Metrics } from '../../src/telemetry/metrics.js'
import { httpRequest, type Response } from './gateway.js'
import { freePort } from './upstream.js'
import { etcdctl, spawnMember, startEtcdCluster as startCluster, waitHealthy, type EtcdCluster, type EtcdMember, type EtcdTlsFiles } from '../../bench/lib/etcd.js'

export { etcdctl, type EtcdCluster, type EtcdMember, type EtcdTlsFiles } from '../../bench/lib/etcd.js'

export interface EtcdServer extends EtcdMember {
  /** `etcdctl --endpoints=<this> ...args`; resolves with stdout, rejects with stderr. */
  ctl(args: readonly string[], env?: Record<string, string>): Promise<string>
  close(): Promise<void>
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

/** `size` members on loopback (bench/lib/etcd.ts); healthy (a leader elected) when it resolves. */
export async function startEtcdCluster(size = 3, options: { suite?: boolean } = {}): Promise<EtcdCluster> {
  const cluster = await startCluster(size)
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
