// Propagation speed (README "Running several instances against etcd": target 1 s p99): three
// gateway processes watch one etcd; for each of 100 route changes, the time from writing it until every
// instance serves it, measured on the data path (a request that gets 200 instead of 404).
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Pool } from 'undici'
import { describe, expect, it, onTestFinished } from 'vitest'
import { createEtcdClient } from '../../src/etcd/client.js'
import { spawnGateway } from '../helpers/gateway.js'
import { startEtcd } from '../helpers/etcd.js'
import { startUpstream } from '../helpers/upstream.js'

const CHANGES = 100

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

/** Resolves with the ms from `startMs` until `path` answers 200 (polled about every millisecond). */
async function inForceAfter(pool: Pool, path: string, startMs: number, timeoutMs = 5_000): Promise<number> {
  for (;;) {
    const r = await pool.request({ path, method: 'GET' })
    await r.body.dump()
    if (r.statusCode === 200) return performance.now() - startMs
    if (performance.now() - startMs > timeoutMs) throw new Error(`${path} not in force after ${timeoutMs} ms (status ${r.statusCode})`)
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
}

describe('propagation of an etcd change', () => {
  it('puts a change in force on all 3 instances within 1 s (p99)', async () => {
    const etcd = await startEtcd()
    const client = await createEtcdClient({ endpoints: [etcd.endpoint] })
    onTestFinished(() => client.close())
    const up = await startUpstream()
    const snapshots = mkdtempSync(join(tmpdir(), 'tollgate-etcd-prop-'))
    onTestFinished(() => rmSync(snapshots, { recursive: true, force: true }))
    await client.put('/prop/upstreams/u').value(JSON.stringify({ targets: [{ url: up.url }] }))
    const gateways = await Promise.all([0, 1, 2].map((i) => spawnGateway(
      `etcd: { endpoints: ["${etcd.endpoint}"], prefix: /prop, snapshotFile: "${snapshots}/g${i}.json" }\n`, [], { TOLLGATE_LOG_LEVEL: 'warn' })))
    const pools = gateways.map((g) => new Pool(g.url, { connections: 1, keepAliveTimeout: 30_000 }))
    onTestFinished(() => Promise.all(pools.map((p) => p.close())).then(() => undefined))

    const everywhere: number[] = []
    const perInstance: number[] = []
    for (let i = 0; i < CHANGES; i++) {
      const path = `/p${i}`
      const startMs = performance.now()
      await client.put(`/prop/routes/p${i}`).value(JSON.stringify({ match: { path }, upstream: 'u' }))
      const times = await Promise.all(pools.map((pool) => inForceAfter(pool, path, startMs)))
      perInstance.push(...times)
      everywhere.push(Math.max(...times))
    }
    everywhere.sort((a, b) => a - b)
    perInstance.sort((a, b) => a - b)
    const p50 = percentile(everywhere, 50)
    const p99 = percentile(everywhere, 99)
    console.info(`etcd propagation, ${CHANGES} route puts, 3 gateway processes, in force on all 3 (write -> first 200): ` +
      `p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${everywhere[everywhere.length - 1]!.toFixed(1)} ms; ` +
      `per instance p50 ${percentile(perInstance, 50).toFixed(1)} ms, p99 ${percentile(perInstance, 99).toFixed(1)} ms`)
    expect(p99).toBeLessThan(1_000)
    for (const g of gateways) expect((await g.stop()).code).toBe(0)
  }, 60_000)
})
