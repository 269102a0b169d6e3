// The soak's own etcd: Debian's `etcd` binary (package etcd-server; CI extracts it into /opt/etcd) on free
// loopback ports with a throwaway data directory, started and stopped by its pid like every bench child.
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { findBinary, freePort, spawnChild, tailOf, type Child } from './processes.js'

const READY_TIMEOUT_MS = 15_000

export interface EtcdProcess {
  readonly endpoint: string
  readonly child: Child
}

/** The etcd binary: $ETCD_BIN, then PATH, then where .ci/run extracts Debian's package. */
export function findEtcd(): string | null {
  const fromEnv = process.env['ETCD_BIN']
  if (fromEnv !== undefined && existsSync(fromEnv)) return fromEnv
  return findBinary('etcd') ?? (existsSync('/opt/etcd/usr/bin/etcd') ? '/opt/etcd/usr/bin/etcd' : null)
}

async function isHealthy(endpoint: string): Promise<boolean> {
  try {
    const r = await request(`${endpoint}/health`, { signal: AbortSignal.timeout(1_000) })
    const body = (await r.body.json()) as { health?: string }
    return body.health === 'true'
  } catch {
    return false
  }
}

export async function startEtcd(dir: string): Promise<EtcdProcess> {
  const bin = findEtcd()
  if (bin === null) throw new Error('etcd not found: install Debian\'s etcd-server (or set ETCD_BIN); .ci/run extracts it into /opt/etcd')
  for (let attempt = 0; ; attempt++) {
    const clientPort = await freePort()
    const peerPort = await freePort()
    const dataDir = join(dir, `etcd-${attempt}`)
    mkdirSync(dataDir, { recursive: true })
    const client = `http://127.0.0.1:${clientPort}`
    const peer = `http://127.0.0.1:${peerPort}`
    const child = spawnChild('etcd', bin, [
      '--name', 'soak', '--data-dir', join(dataDir, 'data'),
      '--listen-client-urls', client, '--advertise-client-urls', client,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `soak=${peer}`,
      // A throwaway data directory: no fsync. Compaction keeps the revision history of a long soak bounded,
      // and the gateway's watch meets a compaction now and then, as in production.
      '--unsafe-no-fsync', '--auto-compaction-mode', 'revision', '--auto-compaction-retention', '1000',
      '--logger', 'zap', '--log-level', 'error', '--log-outputs', 'stderr',
    ], { core: null, logPath: join(dataDir, 'log') })
    const deadline = Date.now() + READY_TIMEOUT_MS
    while (Date.now() < deadline && !child.hasExited()) {
      if (await isHealthy(client)) return { endpoint: client, child }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    const why = child.hasExited() ? `exited (${tailOf(child.logPath) || 'no output'})` : `not healthy within ${READY_TIMEOUT_MS / 1000} s`
    await child.stop(1_000)
    // A port taken between freePort() and etcd's bind: try other ports.
    if (attempt >= 2) throw new Error(`etcd ${why}`)
  }
}
