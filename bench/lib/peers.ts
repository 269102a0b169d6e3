// The peers: everything the bench puts between the load generator and the upstream. Each one starts
// its own process on a given port (pinned to the proxy core) and is stopped after its scenario.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { minimalConfig, type Scenario } from '../scenarios.js'
import { caddyConfig, haproxyConfig, nginxProxyConfig } from './native-configs.js'
import { benchScript } from './paths.js'
import { findBinary, freePort, spawnChild, waitUntilReady, type Child } from './processes.js'
import type { BenchCertificate } from './certs.js'
import type { Upstream } from './upstream.js'

export interface PeerStartContext {
  readonly port: number
  readonly upstream: Upstream
  readonly scenario: Scenario
  /** A fresh directory for this instance's config and log. */
  readonly dir: string
  /** The core (or taskset list of cores) the peer is pinned to, or null. */
  readonly core: number | string | null
  /** The scenario's redis-server (Scenario.needsRedis), else null. */
  readonly redisUrl: string | null
  /** The scenario's OTLP receiver (Scenario.needsOtlpReceiver), else null. */
  readonly otlpEndpoint: string | null
  /** The bench certificate when the scenario speaks TLS to the peers (Scenario.protocol), else null. */
  readonly tls: BenchCertificate | null
}

/** The peer's own URL scheme in a scenario: https when it speaks TLS to the load generator. */
const schemeOf = (context: PeerStartContext): string => (context.tls === null ? 'http' : 'https')

export interface RunningPeer {
  readonly url: string
  /** The process to sample RSS from; null for `direct`. */
  readonly child: Child | null
  /** Resolves with the exit code. */
  stop(): Promise<number | null>
}

/** A peer that cannot run here, with the reason printed as `skipped <peer>: <reason>`. */
export class PeerSkipped extends Error {
  override name = 'PeerSkipped'
}

export interface Peer {
  readonly name: string
  /** What it is, for the README and the JSON report. */
  readonly description: string
  /** Why this peer cannot run on this machine at all, or null. */
  missing(): string | null
  start(context: PeerStartContext): Promise<RunningPeer>
}

const READY_TIMEOUT_MS = 10_000

async function readyOrSkip(name: string, url: string, child: Child): Promise<RunningPeer> {
  const notReady = await waitUntilReady(url, READY_TIMEOUT_MS, child)
  if (notReady !== null) {
    await child.stop()
    throw new PeerSkipped(notReady)
  }
  return { url: new URL(url).origin, child, stop: () => child.stop() }
}

function nodeScriptPeer(name: string, script: string, description: string): Peer {
  const path = benchScript(`peers/${script}.js`)
  return {
    name,
    description,
    missing: () => (existsSync(path) ? null : `${path} not built (run npx tsc -p .)`),
    start({ port, upstream, dir, core }) {
      const child = spawnChild(name, process.execPath, [path, '--port', String(port), '--upstream', upstream.url], {
        core, logPath: join(dir, 'log'),
      })
      return readyOrSkip(name, `http://127.0.0.1:${port}/`, child)
    },
  }
}

function nativePeer(name: string, binary: string, description: string,
  command: (bin: string, context: PeerStartContext) => { args: string[], env?: NodeJS.ProcessEnv }): Peer {
  return {
    name,
    description,
    missing: () => (findBinary(binary) === null ? `not installed (apt-get install ${name})` : null),
    start(context) {
      const bin = findBinary(binary)
      if (bin === null) throw new PeerSkipped(`not installed (apt-get install ${name})`)
      const { args, env } = command(bin, context)
      const child = spawnChild(name, bin, args, { core: context.core, logPath: join(context.dir, 'log'), env })
      return readyOrSkip(name, `${schemeOf(context)}://127.0.0.1:${context.port}/`, child)
    },
  }
}

/** The first start-up log line saying a setting is accepted but not enforced yet, or null. */
function notEnforcedLine(logPath: string): string | null {
  const line = readFileSync(logPath, 'utf8').split('\n').find((l) => /not enforced/i.test(l))
  if (line === undefined) return null
  try {
    const parsed = JSON.parse(line) as { msg?: unknown }
    if (typeof parsed.msg === 'string') return parsed.msg
  } catch {
    // not JSON: the line itself
  }
  return line.length > 200 ? `${line.slice(0, 200)}…` : line
}

/** One request, then (bounded) wait for its access line in the log file: the access log is really on. */
async function writesAccessLines(url: string, logPath: string): Promise<boolean> {
  const r = await fetch(url)
  await r.arrayBuffer()
  const deadline = Date.now() + 5000
  while (Date.now() < deadline) {
    if (readFileSync(logPath, 'utf8').includes('"msg":"access"')) return true
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return false
}

/** `isCore`: always the one-route config (peer tollgate-core), whatever the scenario's. */
function tollgatePeer(tollgateCli: string, isCore: boolean): Peer {
  return {
    name: isCore ? CORE_PEER : 'tollgate',
    description: isCore
      ? 'the same gateway with the one-route config of scenario small, sent GET /, beside tollgate in the scenarios measured against the core path: their baseline'
      : 'this project: node dist/src/cli.js with a one-route routes.yaml (scenario configs for routes-*, policies, cluster-limit, tracing)',
    missing: () => (existsSync(tollgateCli) ? null : `${tollgateCli} not built (run npx tsc -p .)`),
    async start({ port, upstream, scenario, dir, core, redisUrl, otlpEndpoint, tls }) {
      const config = join(dir, 'routes.yaml')
      // Scenarios tls and h2: the same config behind a TLS listener, HTTP/2 offered by ALPN for h2.
      const listener = tls === null || isCore ? '' : `tls: { certificates: [{ cert: ${tls.cert}, key: ${tls.key} }] }\nhttp2: ${scenario.protocol === 'h2'}\n`
      writeFileSync(config, listener + ((isCore ? undefined : scenario.tollgateConfig) ?? minimalConfig)(upstream.url, redisUrl, otlpEndpoint))
      const adminPort = await freePort()
      // The access log only where the scenario measures it (Scenario.accessLog), at info, into the log file.
      const accessLog = scenario.accessLog === true && !isCore
      const env = { ...process.env, TOLLGATE_LOG_ACCESS: String(accessLog), ...(accessLog ? { TOLLGATE_LOG_LEVEL: 'info' } : {}) }
      const extra = (isCore ? scenario.coreArgs : scenario.tollgateArgs) ?? []
      const child = spawnChild('tollgate', process.execPath, [tollgateCli, '--config', config,
        '--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${adminPort}`, ...extra], { core, logPath: join(dir, 'log'), env })
      const notReady = await waitUntilReady(`http://127.0.0.1:${adminPort}/readyz`, READY_TIMEOUT_MS, child)
      if (notReady !== null) {
        await child.stop()
        throw new PeerSkipped(notReady)
      }
      if (accessLog && !await writesAccessLines(`http://127.0.0.1:${port}${scenario.path}`, child.logPath)) {
        await child.stop()
        throw new PeerSkipped('no access line in its log after a request: the scenario would not measure the access log')
      }
      if (scenario.needsEnforcedPolicies === true && !isCore) {
        const line = notEnforcedLine(child.logPath)
        if (line !== null) {
          await child.stop()
          throw new PeerSkipped(`policies not enforced yet (start-up log: ${line})`)
        }
      }
      return { url: `${listener === '' ? 'http' : 'https'}://127.0.0.1:${port}`, child, stop: () => child.stop() }
    },
  }
}

/** bench/peers/node-tls-forwarder.ts: node:https, or node:http2's secure server in scenario h2. */
function nodeTlsPeer(): Peer {
  const path = benchScript('peers/node-tls-forwarder.js')
  return {
    name: 'node-tls',
    description: 'node:https (tls) or node:http2 with allowHTTP1 (h2) + undici Pool.stream, no routing or policies: the thinnest Node forwarder over TLS (bench/peers/node-tls-forwarder.ts)',
    missing: () => (existsSync(path) ? null : `${path} not built (run npx tsc -p .)`),
    start({ port, upstream, dir, core, tls, scenario }) {
      if (tls === null) throw new PeerSkipped('speaks TLS only (scenarios tls and h2)')
      const args = [path, '--port', String(port), '--upstream', upstream.url, '--cert', tls.cert, '--key', tls.key]
      if (scenario.protocol === 'h2') args.push('--h2')
      const child = spawnChild('node-tls', process.execPath, args, { core, logPath: join(dir, 'log') })
      return readyOrSkip('node-tls', `https://127.0.0.1:${port}/`, child)
    },
  }
}

const direct: Peer = {
  name: 'direct',
  description: 'no proxy: the load generator talks to the upstream itself (the ceiling on this machine)',
  missing: () => null,
  start: async ({ upstream }) => ({ url: upstream.url, child: null, stop: async () => 0 }),
}

/** The name of the core-path baseline peer (Scenario.hasCoreBaseline). */
export const CORE_PEER = 'tollgate-core'

/** Tollgate with the one-route config, run beside tollgate in scenarios with hasCoreBaseline (not a --only choice). */
export const createCorePeer = (tollgateCli: string): Peer => tollgatePeer(tollgateCli, true)

/** Every peer, in table order; tollgateCli is the gateway's entry (dist/src/cli.js unless --tollgate-cli). */
export const createPeers = (tollgateCli: string): readonly Peer[] => [
  direct,
  tollgatePeer(tollgateCli, false),
  nodeScriptPeer('undici-stream', 'undici-stream-forwarder',
    'node:http + undici Pool.stream, no routing or policies: the thinnest Node forwarder (bench/peers/undici-stream-forwarder.ts)'),
  nodeScriptPeer('fastify-http-proxy', 'fastify-http-proxy',
    'fastify 5 + @fastify/http-proxy 11 (reply-from over undici), defaults (bench/peers/fastify-http-proxy.ts)'),
  nodeScriptPeer('fast-gateway', 'fast-gateway',
    'fast-gateway 3.4.7 from npm (restana + fast-proxy-lite), one catch-all route (bench/peers/fast-gateway.ts)'),
  nodeScriptPeer('http-proxy', 'http-proxy',
    'http-proxy 1.18 (http-party) behind node:http, keep-alive agent (bench/peers/http-proxy.ts)'),
  nativePeer('nginx', 'nginx', 'nginx (Debian), 1 worker, keep-alive upstream pool',
    (bin, { dir, port, upstream, tls, scenario }) => {
      const conf = join(dir, 'nginx.conf')
      writeFileSync(conf, nginxProxyConfig(dir, port, upstream.hostPort, tls === null ? null : { ...tls, http2: scenario.protocol === 'h2' }))
      return { args: ['-p', dir, '-c', conf, '-e', 'stderr'] }
    }),
  nodeTlsPeer(),
  nativePeer('haproxy', 'haproxy', 'HAProxy (Debian), 1 thread, http-reuse always',
    (_bin, { dir, port, upstream }) => {
      const conf = join(dir, 'haproxy.cfg')
      writeFileSync(conf, haproxyConfig(port, upstream.hostPort))
      return { args: ['-f', conf, '-db'] }
    }),
  nativePeer('caddy', 'caddy', 'Caddy 2 (Debian), reverse_proxy with defaults',
    (_bin, { dir, port, upstream }) => {
      const conf = join(dir, 'Caddyfile')
      writeFileSync(conf, caddyConfig(port, upstream.hostPort))
      return {
        args: ['run', '--config', conf, '--adapter', 'caddyfile'],
        env: { ...process.env, HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir },
      }
    }),
]
