// Real etcd on loopback for the fault drill (bench/drill.ts) and the tests (test/helpers/etcd.ts wraps these
// with vitest's clean-up): Debian's `etcd` (package etcd-server) on random ports with a temporary data
// directory, stopped by its PID; a 3-member cluster; etcdctl. Nothing here depends on vitest.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request as undiciRequest } from 'undici'
import { freePort } from './processes.js'

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

export interface EtcdCluster {
  readonly members: readonly EtcdMember[]
  readonly endpoints: readonly string[]
  /** The member that is leader now (asks etcdctl). */
  leader(): Promise<EtcdMember>
  /** Hands leadership to `to` (etcdctl move-leader); resolves when it leads. */
  moveLeader(to: EtcdMember): Promise<void>
  /** Watchers open on `member` now (its etcd_debugging_mvcc_watcher_total gauge), or null when it does not answer. */
  watchers(member: EtcdMember): Promise<number | null>
  ctl(args: readonly string[]): Promise<string>
  close(): Promise<void>
}

/** PEM files for an etcd that serves TLS and asks clients for a certificate. */
export interface EtcdTlsFiles {
  readonly ca: string
  readonly cert: string
  readonly key: string
}

export interface MemberSpec {
  readonly name: string
  readonly clientPort: number
  readonly peerPort: number
  readonly dataDir: string
  readonly initialCluster: string
  readonly tls?: EtcdTlsFiles
}

const ETCD = process.env['ETCD_BIN'] ?? 'etcd'
const ETCDCTL = process.env['ETCDCTL_BIN'] ?? 'etcdctl'
const HEALTHY_TIMEOUT_MS = 15_000

export function etcdctl(endpoints: readonly string[], args: readonly string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(ETCDCTL, [`--endpoints=${endpoints.join(',')}`, '--dial-timeout=2s', '--command-timeout=5s', ...args],
      { env: { ...process.env, ETCDCTL_API: '3', ...env }, timeout: 15_000 }, (err, stdout, stderr) => {
        if (err !== null) reject(new Error(`etcdctl ${args.join(' ')}: ${stderr || err.message}`))
        else resolve(stdout)
      })
  })
}

function memberArgs(m: MemberSpec): string[] {
  const client = `${m.tls === undefined ? 'http' : 'https'}://127.0.0.1:${m.clientPort}`
  const peer = `http://127.0.0.1:${m.peerPort}`
  return [
    '--name', m.name, '--data-dir', m.dataDir,
    '--listen-client-urls', client, '--advertise-client-urls', client,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
    '--initial-cluster', m.initialCluster, '--initial-cluster-state', 'new', '--initial-cluster-token', `t-${m.initialCluster.length}-${m.initialCluster.slice(-5)}`,
    // Fast elections for the failover tests and the drill; no fsync on a throwaway data directory.
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

/** Polls etcd's /health until it says true (a leader is known and the member serves). */
export async function waitHealthy(endpoint: string, isRunning: () => boolean, timeoutMs = HEALTHY_TIMEOUT_MS, tls?: EtcdTlsFiles): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!isRunning()) throw new Error(`etcd at ${endpoint} exited`)
    if (await isHealthy(endpoint, tls)) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`etcd at ${endpoint} not healthy within ${timeoutMs} ms`)
}

/** Starts one member; `restart()` reuses its ports and data directory. */
export function spawnMember(spec: MemberSpec, extraArgs: readonly string[]): EtcdMember {
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
      await waitHealthy(endpoint, () => child.exitCode === null && child.signalCode === null, HEALTHY_TIMEOUT_MS, spec.tls)
    },
    pause: () => { process.kill(child.pid!, 'SIGSTOP') },
    resume: () => { process.kill(child.pid!, 'SIGCONT') },
    output: () => out,
  }
}

/** `size` members on loopback; healthy (a leader elected) when it resolves. The caller closes it. */
export async function startEtcdCluster(size = 3): Promise<EtcdCluster> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await tryStartEtcdCluster(size)
    } catch (err) {
      // A port was taken between freePort() and etcd's bind (other processes start servers meanwhile).
      if (attempt >= 2) throw err
    }
  }
}

async function tryStartEtcdCluster(size: number): Promise<EtcdCluster> {
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
      const deadline = Date.now() + HEALTHY_TIMEOUT_MS
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
        if (Date.now() > deadline) throw new Error(`no leader within ${HEALTHY_TIMEOUT_MS / 1000} s: ${seen}`)
        await new Promise((r) => setTimeout(r, 100))
      }
    },
    async moveLeader(to) {
      const current = await cluster.leader()
      if (current === to) return
      // `member list` prints member ids in hex, as move-leader takes them (JSON output has them as numbers
      // past 2^53, which JSON.parse rounds).
      const line = (await etcdctl([current.endpoint], ['member', 'list'])).split('\n').find((l) => l.split(', ')[2] === to.name)
      if (line === undefined) throw new Error(`etcd member ${to.name} not in the member list`)
      await etcdctl([current.endpoint], ['move-leader', line.split(', ')[0]!])
      const deadline = Date.now() + HEALTHY_TIMEOUT_MS
      while ((await cluster.leader()) !== to) {
        if (Date.now() > deadline) throw new Error(`${to.name} did not become leader within ${HEALTHY_TIMEOUT_MS / 1000} s`)
        await new Promise((r) => setTimeout(r, 50))
      }
    },
    async watchers(member) {
      try {
        const r = await undiciRequest(`${member.endpoint}/metrics`, { signal: AbortSignal.timeout(2000) })
        const m = /^etcd_debugging_mvcc_watcher_total (\S+)$/m.exec(await r.body.text())
        return m === null ? null : Number(m[1])
      } catch {
        return null
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
  return cluster
}
