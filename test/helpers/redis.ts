// Real Redis for the tests: Debian's redis-server (package redis-server, which .ci/run installs) on random
// loopback ports, no persistence, a temporary --dir, stopped by its PID. Also a Redis Cluster of masters
// made with `redis-cli --cluster create`.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { onTestFinished } from 'vitest'
import { freePort } from './upstream.js'

const REDIS_SERVER = process.env['REDIS_SERVER_BIN'] ?? 'redis-server'
const REDIS_CLI = process.env['REDIS_CLI_BIN'] ?? 'redis-cli'

export interface RedisServer {
  readonly port: number
  /** redis://127.0.0.1:<port>, or rediss:// when it serves TLS */
  readonly url: string
  readonly pid: number
  readonly isRunning: boolean
  /** SIGSTOP / SIGCONT: Redis frozen with its sockets open. */
  pause(): void
  resume(): void
  /** SIGKILL, wait for the exit. */
  kill(): Promise<void>
  /** Killed if running, then started again on the same port (empty: no persistence); resolves when ready. */
  restart(): Promise<void>
  /** `redis-cli -p <port> ...args` (with the server's password, if any); resolves with stdout. */
  cli(args: readonly string[]): Promise<string>
  output(): string
  /** SIGTERM (after SIGCONT), wait for the exit; SIGKILL if it takes over 5 s. */
  close(): Promise<void>
}

export interface RedisOptions {
  /** The caller closes it (afterAll) instead of the end of the current test. */
  readonly suite?: boolean
  /** More redis-server arguments, e.g. ['--requirepass', 'secret']. */
  readonly args?: readonly string[]
  /** Used by cli(): the password of the default user. */
  readonly password?: string
  /** Serve TLS only (url: rediss://), with these files from makeRedisCertificates(). */
  readonly tls?: RedisTlsFiles
}

export interface RedisTlsFiles {
  readonly ca: string
  readonly cert: string
  readonly key: string
}

/** A CA and a server certificate for 127.0.0.1, made with openssl in `dir`. */
export function makeRedisCertificates(dir: string): RedisTlsFiles {
  const run = (args: string[]): void => { execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' }) }
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n')
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=tollgate-test-ca'])
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server-key.pem', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'])
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext'])
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server-key.pem') }
}

export function redisCli(port: number, args: readonly string[], password?: string, tls?: RedisTlsFiles): Promise<string> {
  const auth = [...(password === undefined ? [] : ['-a', password, '--no-auth-warning']), ...(tls === undefined ? [] : ['--tls', '--cacert', tls.ca])]
  return new Promise((resolve, reject) => {
    execFile(REDIS_CLI, ['-h', '127.0.0.1', '-p', String(port), ...auth, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`redis-cli ${args.join(' ')}: ${stderr || stdout || err.message}`))
      else resolve(stdout.trim())
    })
  })
}

interface Launch {
  readonly port: number
  readonly dir: string
  readonly args: readonly string[]
}

function spawnRedis(spec: Launch, password: string | undefined, tls?: RedisTlsFiles): RedisServer & { ready: Promise<void> } {
  let child: ChildProcess
  let out = ''
  let exited: Promise<void>
  let ready: Promise<void>
  const launch = (): void => {
    child = spawn(REDIS_SERVER, [
      '--port', String(spec.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', spec.dir, '--daemonize', 'no', '--logfile', '', '--loglevel', 'notice', ...spec.args,
    ], { stdio: ['ignore', 'pipe', 'pipe'] })
    const c = child
    exited = new Promise((r) => c.once('exit', () => r()))
    ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server on ${spec.port} not ready within 10 s:\n${out}`)), 10_000)
      const onData = (d: Buffer): void => {
        out = (out + d).slice(-20_000)
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer)
          resolve()
        }
      }
      c.stdout!.on('data', onData)
      c.stderr!.on('data', onData)
      c.once('exit', (code, signal) => {
        clearTimeout(timer)
        reject(new Error(`redis-server on ${spec.port} exited (${code ?? signal}):\n${out}`))
      })
    })
    ready.catch(() => undefined) // observed by the caller; an exit after ready is not an error
  }
  launch()
  const isRunning = (): boolean => child.exitCode === null && child.signalCode === null
  const signal = async (sig: NodeJS.Signals): Promise<void> => {
    if (!isRunning()) return
    try { process.kill(child.pid!, 'SIGCONT') } catch { /* gone */ }
    process.kill(child.pid!, sig)
    await exited
  }
  return {
    port: spec.port,
    url: `${tls === undefined ? 'redis' : 'rediss'}://127.0.0.1:${spec.port}`,
    get pid() { return child.pid! },
    get isRunning() { return isRunning() },
    get ready() { return ready },
    pause: () => { process.kill(child.pid!, 'SIGSTOP') },
    resume: () => { process.kill(child.pid!, 'SIGCONT') },
    kill: () => signal('SIGKILL'),
    async restart() {
      await signal('SIGKILL')
      launch()
      await ready
    },
    cli: (args) => redisCli(spec.port, args, password, tls),
    output: () => out,
    async close() {
      if (!isRunning()) return
      const timer = setTimeout(() => { try { process.kill(child.pid!, 'SIGKILL') } catch { /* gone */ } }, 5000)
      await signal('SIGTERM')
      clearTimeout(timer)
    },
  }
}

/** One redis-server on 127.0.0.1; ready when it resolves. */
export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  for (let attempt = 0; ; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-redis-'))
    const port = await freePort()
    const tls = options.tls === undefined ? [] : [
      '--port', '0', '--tls-port', String(port), '--tls-cert-file', options.tls.cert, '--tls-key-file', options.tls.key,
      '--tls-ca-cert-file', options.tls.ca, '--tls-auth-clients', 'no',
    ]
    const server = spawnRedis({ port, dir, args: [...tls, ...(options.args ?? [])] }, options.password, options.tls)
    try {
      await server.ready
    } catch (err) {
      await server.kill()
      rmSync(dir, { recursive: true, force: true })
      if (attempt < 2) continue // the port was taken between freePort() and redis-server's bind
      throw err
    }
    let closed = false
    const stop = server.close
    const close = async (): Promise<void> => {
      if (closed) return
      closed = true
      await stop()
      rmSync(dir, { recursive: true, force: true })
    }
    const handle: RedisServer = Object.assign(server, { close })
    if (options.suite !== true) onTestFinished(close)
    return handle
  }
}

export interface RedisCluster {
  readonly nodes: readonly RedisServer[]
  /** redis://127.0.0.1:<port> of every node: the seed list for redis.cluster. */
  readonly urls: readonly string[]
  close(): Promise<void>
}

/** `masters` redis-servers joined into one Redis Cluster (no replicas); cluster_state:ok when it resolves. */
export async function startRedisCluster(options: { masters?: number; suite?: boolean } = {}): Promise<RedisCluster> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await tryStartRedisCluster(options.masters ?? 3, options.suite === true)
    } catch (err) {
      if (attempt >= 2) throw err // else a port was taken between freePort() and a bind: try new ports
    }
  }
}

async function tryStartRedisCluster(masters: number, suite: boolean): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-redis-cluster-'))
  const nodes: Array<RedisServer & { ready: Promise<void> }> = []
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await Promise.all(nodes.map((n) => n.close()))
    rmSync(dir, { recursive: true, force: true })
  }
  if (!suite) onTestFinished(close)
  try {
    for (let i = 0; i < masters; i++) {
      const port = await freePort()
      // The bus port is set too: the default (port + 10000) may be taken or past 65535.
      nodes.push(spawnRedis({
        port, dir, args: [
          '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`),
          '--cluster-port', String(await freePort()), '--cluster-node-timeout', '2000',
        ],
      }, undefined))
    }
    await Promise.all(nodes.map((n) => n.ready))
    await redisCli(nodes[0]!.port, ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`),
      '--cluster-replicas', '0', '--cluster-yes'])
    const deadline = Date.now() + 20_000
    for (const node of nodes) {
      while (!(await node.cli(['cluster', 'info'])).includes('cluster_state:ok')) {
        if (Date.now() > deadline) throw new Error(`redis cluster not ok within 20 s:\n${node.output()}`)
        await new Promise((r) => setTimeout(r, 100))
      }
    }
  } catch (err) {
    await close()
    throw err
  }
  return { nodes, urls: nodes.map((n) => n.url), close }
}
