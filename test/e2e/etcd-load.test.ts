// Reload semantics for etcd (README "Running several instances against etcd"): a gateway process serving a few hundred requests per
// second loses none while 40 etcd changes stream in (targets, registrations joining and leaving, routes
// added, changed and removed, a rejected item), and a request in flight on a route that etcd removes
// finishes with 200.
import { mkdtempSync, rmSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { createEtcdClient } from '../../src/etcd/client.js'
import { httpRequest, spawnGateway, type GatewayProcess } from '../helpers/gateway.js'
import { loadLoop, newLoadStats } from '../helpers/load.js'
import { startEtcd } from '../helpers/etcd.js'
import { startUpstream } from '../helpers/upstream.js'

/** Resolves when the process logged that it applied an etcd config of revision >= `revision`. */
function appliedAtLeast(proc: GatewayProcess, revision: number, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      for (const text of proc.stdout().split('\n')) {
        if (!text.startsWith('{')) continue
        const line = JSON.parse(text) as { msg?: string; source?: string; revision?: string }
        if (line.msg === 'config reloaded' && line.source === 'etcd' && Number(line.revision) >= revision) return true
      }
      return false
    }
    const onData = (): void => {
      if (!check()) return
      clearTimeout(timer)
      proc.child.stdout!.off('data', onData)
      resolve()
    }
    const timer = setTimeout(() => {
      proc.child.stdout!.off('data', onData)
      reject(new Error(`revision ${revision} not applied within ${timeoutMs} ms:\n${proc.stdout().slice(-2000)}\n${proc.stderr().slice(-2000)} ${proc.child.exitCode}`))
    }, timeoutMs)
    proc.child.stdout!.on('data', onData)
    onData()
  })
}

describe('etcd changes under load', () => {
  it('serves a few hundred requests per second with zero errors while 40 etcd changes stream in', async () => {
    const etcd = await startEtcd()
    const client = await createEtcdClient({ endpoints: [etcd.endpoint] })
    onTestFinished(() => client.close())
    const ups = await Promise.all(['up1', 'up2', 'up3', 'reg'].map((body) => startUpstream({ body })))
    const [up1, up2, up3, reg] = ups as [typeof ups[0], typeof ups[0], typeof ups[0], typeof ups[0]]
    let releaseSlow!: () => void
    const slowReleased = new Promise<void>((r) => { releaseSlow = r })
    let slowArrived!: () => void
    const arrived = new Promise<void>((r) => { slowArrived = r })
    const slow = await startUpstream({
      handler: (_req: IncomingMessage, res: ServerResponse) => {
        slowArrived()
        void slowReleased.then(() => res.end('slow done'))
      },
    })
    onTestFinished(releaseSlow)
    const j = JSON.stringify
    await client.put('/load/upstreams/main').value(j({ targets: [{ url: up1.url }] }))
    await client.put('/load/upstreams/alt').value(j({ targets: [{ url: up2.url }] }))
    await client.put('/load/routes/stable').value(j({ match: { path: '/stable/*' }, upstream: 'main' }))
    await client.put('/load/routes/s2').value(j({ match: { path: '/s2/*', methods: ['GET'] }, upstream: 'alt' }))
    const snapshots = mkdtempSync(join(tmpdir(), 'tollgate-etcd-load-'))
    onTestFinished(() => rmSync(snapshots, { recursive: true, force: true }))
    const proc = await spawnGateway(`etcd: { endpoints: ["${etcd.endpoint}"], prefix: /load, snapshotFile: "${snapshots}/snapshot.json" }\n`)

    const targetsOf = [[up1.url], [up1.url, up2.url], [up2.url], [up2.url, up3.url]]
    const lease = client.lease(30)
    onTestFinished(() => lease.revoke().catch(() => undefined))
    let current = 0
    let running = true
    const stats = newLoadStats()
    const paths = (): Array<{ route: string; path: string }> => [
      { route: 'stable', path: '/stable/x?q=1' },
      { route: 's2', path: '/s2/y' },
      { route: 'churn', path: `/churn/${current}/z` },
      { route: 'stable', path: '/stable/' },
    ]
    const loops = [0, 1, 2, 3, 4, 5].map(() => loadLoop(proc.url, 70, paths, () => running, stats, 3000))
    const startedMs = performance.now()
    let rejected = 0
    let slowResult: Promise<{ status: number; body: string }> | null = null
    try {
      for (let g = 1; g <= 40; g++) {
        await new Promise((r) => setTimeout(r, 100))
        let revision: number
        switch (g % 5) {
          case 0: // the targets of a busy upstream change
            revision = Number((await client.put('/load/upstreams/main').value(j({ targets: targetsOf[g % 4]!.map((url) => ({ url })) })).exec()).header.revision)
            break
          case 1: // a registered instance joins, or leaves
            revision = Number((g % 2 === 1
              ? await lease.put('/load/services/main/reg').value(j({ url: reg.url })).exec()
              : await client.delete().key('/load/services/main/reg').exec()).header.revision)
            break
          case 2: { // a route comes, the one before goes, in one transaction
            const txn = await client.if('/load/routes/stable', 'Version', '>', 0).then(
              client.put(`/load/routes/churn-${g}`).value(j({ match: { path: `/churn/${g}/*` }, upstream: 'main' })),
              client.delete().key(`/load/routes/churn-${g - 5}`),
            ).commit()
            revision = Number(txn.header.revision)
            break
          }
          case 3: // a route that stays changes
            revision = Number((await client.put('/load/routes/stable').value(j({
              match: { path: '/stable/*' }, upstream: 'main', ...(g % 10 === 3 ? { rewrite: { stripPrefix: '/stable' } } : {}),
            })).exec()).header.revision)
            break
          default: // a bad item: rejected, nothing else moves; then a valid change to s2
            await client.put(`/load/routes/bad-${g}`).value('{"match":')
            rejected++
            revision = Number((await client.put('/load/routes/s2').value(j({ match: { path: '/s2/*', methods: g % 2 === 0 ? ['GET', 'POST'] : ['GET'] }, upstream: 'alt' })).exec()).header.revision)
        }
        if (g === 12) {
          // A slow request is in flight when etcd removes its route.
          await client.put('/load/upstreams/slowup').value(j({ targets: [{ url: slow.url }] }))
          const added = await client.put('/load/routes/slow').value(j({ match: { path: '/slow/*' }, upstream: 'slowup' }))
          await appliedAtLeast(proc, Number(added.header.revision))
          slowResult = httpRequest(`${proc.url}/slow/x`)
          await arrived
          await client.delete().key('/load/routes/slow')
          const removed = await client.delete().key('/load/upstreams/slowup')
          revision = Number(removed.header.revision)
        }
        await appliedAtLeast(proc, revision)
        if (g % 5 === 2) current = g
        if (g === 13) {
          expect((await httpRequest(`${proc.url}/slow/x`)).status).toBe(404)
          releaseSlow()
        }
      }
    } finally {
      running = false
      await Promise.all(loops)
      releaseSlow()
    }
    const elapsedS = (performance.now() - startedMs) / 1000
    const byRoute = (route: string): Record<string, number> => Object.fromEntries(stats.byRoute.get(route) ?? [])
    console.info(`etcd load test: ${stats.sent} requests in ${elapsedS.toFixed(1)} s = ${(stats.sent / elapsedS).toFixed(0)} req/s; ` +
      `stable ${j(byRoute('stable'))}, s2 ${j(byRoute('s2'))}, churn ${j(byRoute('churn'))}, errors ${j(Object.fromEntries(stats.errors))}`)
    expect(Object.fromEntries(stats.errors)).toEqual({})
    expect(Object.keys(byRoute('stable'))).toEqual(['200'])
    expect(Object.keys(byRoute('s2'))).toEqual(['200'])
    for (const code of Object.keys(byRoute('churn'))) expect(['200', '404']).toContain(code)
    expect(stats.sent / elapsedS).toBeGreaterThan(200)
    expect(await slowResult).toMatchObject({ status: 200, body: 'slow done' })
    const metrics = (await httpRequest(`${proc.adminUrl}/metrics`)).body
    expect(metrics).toContain(`tollgate_config_reloads_total{source="etcd",result="rejected"} ${rejected}`)
    expect((await proc.stop()).code).toBe(0)
  }, 90_000)
})
