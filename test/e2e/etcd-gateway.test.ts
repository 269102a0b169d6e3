// The gateway with an etcd: section (README "Running several instances against etcd"): routes and upstreams from etcd
// merged with the file, rejected items in logs, metrics and /status, registered instances under leases,
// readiness, and etcd going away and coming back.
import { execFile } from 'node:child_process'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Etcd3 } from 'etcd3'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { createEtcdClient } from '../../src/etcd/client.js'
import { CLI, httpRequest, spawnGateway } from '../helpers/gateway.js'
import { nextEvent, startEtcd, startEtcdGateway, startTcpProxy, type EtcdServer } from '../helpers/etcd.js'
import { startUpstream } from '../helpers/upstream.js'

let etcd: EtcdServer
let client: Etcd3
let prefixes = 0

beforeAll(async () => {
  etcd = await startEtcd({ suite: true })
  client = await createEtcdClient({ endpoints: [etcd.endpoint] })
})
afterAll(async () => {
  client.close()
  await etcd.close()
})

const newPrefix = (): string => `/gw-${++prefixes}`
const etcdSection = (prefix: string, endpoint = etcd.endpoint): string =>
  `etcd: { endpoints: ["${endpoint}"], prefix: "${prefix}", snapshotFile: "$DIR/snapshot.json" }\n`
const json = (v: unknown): string => JSON.stringify(v)

interface StatusBody {
  config: {
    source: string
    rejected: Array<{ key?: string; revision?: number; reason: string; keptRevision?: number | null }>
    etcd: { up: boolean; ready: boolean; revision: number; registrations: Array<{ upstream: string; instance: string; url: string; attached: boolean }> }
  }
  upstreams: Array<{ name: string; targets: Array<{ url: string; registered: boolean }> }>
}

/** An upstream that holds every request until release(). */
async function startHoldingUpstream(): Promise<{ url: string; arrived: Promise<void>; release(): void }> {
  let release!: () => void
  const released = new Promise<void>((r) => { release = r })
  let arrivedResolve!: () => void
  const arrived = new Promise<void>((r) => { arrivedResolve = r })
  const up = await startUpstream({
    handler: (_req: IncomingMessage, res: ServerResponse) => {
      arrivedResolve()
      void released.then(() => res.end('held done'))
    },
  })
  onTestFinished(release)
  return { url: up.url, arrived, release }
}

describe('the gateway with etcd', () => {
  it('serves routes and upstreams from etcd merged with the file, etcd winning on the same id, and applies changes without a restart', async () => {
    const one = await startUpstream({ body: 'one' })
    const two = await startUpstream({ body: 'two' })
    const prefix = newPrefix()
    await client.put(`${prefix}/upstreams/etcd-up`).value(json({ targets: [{ url: two.url }] }))
    await client.put(`${prefix}/routes/shared`).value(json({ match: { path: '/shared/*' }, upstream: 'etcd-up' }))
    await client.put(`${prefix}/routes/e`).value(json({ match: { path: '/e/*' }, upstream: 'etcd-up' }))
    const gw = await startEtcdGateway(`${etcdSection(prefix)}
upstreams: { file-up: { targets: [{ url: ${one.url} }] } }
routes:
  - { id: shared, match: { path: /shared/* }, upstream: file-up }
  - { id: fileonly, match: { path: /f/* }, upstream: file-up }
`)
    expect((await gw.get('/shared/x')).body).toBe('two')
    expect((await gw.get('/f/x')).body).toBe('one')
    expect((await gw.get('/e/x')).body).toBe('two')
    expect((await gw.admin('/readyz')).status).toBe(200)

    const applied = gw.nextEtcd()
    await client.put(`${prefix}/routes/late`).value(json({ match: { path: '/late' }, upstream: 'file-up' }))
    await applied
    expect((await gw.get('/late')).body).toBe('one')
    const status = (await gw.admin('/status')).json() as StatusBody
    expect(status.config.source).toBe('file+etcd')
    expect(status.config.etcd).toMatchObject({ up: true, ready: true })
    expect(await gw.metric('tollgate_etcd_up')).toBe(1)
    expect(await gw.metric('tollgate_config_reloads_total', { source: 'etcd', result: 'applied' })).toBeGreaterThanOrEqual(1)
  })

  it('answers /readyz 503 until the first full etcd read, serving the file meanwhile', async () => {
    const one = await startUpstream({ body: 'one' })
    const proxy = await startTcpProxy(etcd.clientPort)
    proxy.cut()
    const prefix = newPrefix()
    await client.put(`${prefix}/routes/e`).value(json({ match: { path: '/e' }, upstream: 'u' }))
    const gw = await startEtcdGateway(`${etcdSection(prefix, proxy.endpoint)}
upstreams: { u: { targets: [{ url: ${one.url} }] } }
routes: [{ id: f, match: { path: /f }, upstream: u }]
`, { ready: false, etcdTuning: { callTimeoutMs: 500, retryCapMs: 200 } })
    const notReady = await gw.admin('/readyz')
    expect(notReady.status).toBe(503)
    expect(notReady.json()).toMatchObject({ reason: expect.stringMatching(/^waiting for the first full read of etcd/) })
    expect((await gw.get('/f')).status).toBe(200)
    expect((await gw.get('/e')).status).toBe(404)
    expect(await gw.metric('tollgate_etcd_up')).toBe(0)

    const ready = nextEvent(gw.gateway.etcd!.events, 'ready')
    proxy.restore()
    await ready
    expect((await gw.admin('/readyz')).status).toBe(200)
    expect((await gw.get('/e')).status).toBe(200)
  })

  it('rejects invalid items with key, revision and reason in the log, the metrics and /status, keeping their previous version, while the rest of the batch applies', async () => {
    const one = await startUpstream({ body: 'one' })
    const prefix = newPrefix()
    const good = await client.put(`${prefix}/routes/kept`).value(json({ match: { path: '/kept' }, upstream: 'u' }))
    const gw = await startEtcdGateway(`${etcdSection(prefix)}upstreams: { u: { targets: [{ url: ${one.url} }] } }\n`)
    expect((await gw.get('/kept')).status).toBe(200)

    const dealt = gw.nextEtcd((e) => e.rejected > 0)
    const txn = await client.if(`${prefix}/routes/kept`, 'Version', '>', 0).then(
      client.put(`${prefix}/routes/kept`).value(json({ match: { path: '/kept-v2' }, upstream: 'no-such-upstream' })),
      client.put(`${prefix}/routes/broken`).value('{"match": {"path": "/b"'),
      client.put(`${prefix}/routes/fresh`).value(json({ match: { path: '/fresh' }, upstream: 'u' })),
    ).commit()
    const revision = Number(txn.header.revision)
    expect(await dealt).toMatchObject({ applied: true, rejected: 2, revision })

    expect((await gw.get('/fresh')).status).toBe(200) // the good item of the batch applied
    expect((await gw.get('/kept')).status).toBe(200) // the previous version of the bad one stays
    expect((await gw.get('/kept-v2')).status).toBe(404)
    const line = await gw.log.next((l) => l['key'] === `${prefix}/routes/kept` && l.level === 50)
    expect(line.msg).toBe(`etcd ${prefix}/routes/kept (rev ${revision}): upstream: upstream "no-such-upstream" is not defined; defined upstreams: u; ` +
      `keeping the previous version (rev ${Number(good.header.revision)})`)
    expect(await gw.metric('tollgate_config_reloads_total', { source: 'etcd', result: 'rejected' })).toBe(2)
    const status = (await gw.admin('/status')).json() as StatusBody
    expect(status.config.rejected).toEqual([
      expect.objectContaining({ key: `${prefix}/routes/broken`, revision, keptRevision: null, reason: expect.stringMatching(/^not valid JSON/) }),
      expect.objectContaining({ key: `${prefix}/routes/kept`, revision, keptRevision: Number(good.header.revision), reason: expect.stringMatching(/no-such-upstream/) }),
    ])

    const fixed = gw.nextEtcd()
    await client.put(`${prefix}/routes/broken`).value(json({ match: { path: '/b' }, upstream: 'u' }))
    await fixed
    expect((await gw.get('/b')).status).toBe(200)
    expect(((await gw.admin('/status')).json() as StatusBody).config.rejected.map((r) => r.key)).toEqual([`${prefix}/routes/kept`])
  })

  it('routes to registered instances while their lease lives and drops them at once when the key is deleted or the lease expires, letting requests in flight finish', async () => {
    const held = await startHoldingUpstream()
    const other = await startUpstream({ body: 'other' })
    const prefix = newPrefix()
    await client.put(`${prefix}/upstreams/dyn`).value(json({}))
    await client.put(`${prefix}/routes/dyn`).value(json({ match: { path: '/dyn/*' }, upstream: 'dyn' }))
    const gw = await startEtcdGateway(etcdSection(prefix))
    const empty = await gw.get('/dyn/x')
    expect(empty.status).toBe(503)
    expect(empty.headers['x-tollgate-error']).toBe('NO_HEALTHY_UPSTREAM')

    const lease = client.lease(10)
    onTestFinished(() => lease.revoke().catch(() => undefined))
    const joined = gw.nextEtcd()
    await lease.put(`${prefix}/services/dyn/held`).value(json({ url: held.url }))
    await joined
    const status = (await gw.admin('/status')).json() as StatusBody
    expect(status.upstreams.find((u) => u.name === 'dyn')?.targets).toEqual([expect.objectContaining({ url: held.url, registered: true })])
    expect(status.config.etcd.registrations).toEqual([expect.objectContaining({ upstream: 'dyn', instance: 'held', url: held.url, attached: true })])

    const inflight = gw.get('/dyn/slow')
    await held.arrived
    const left = gw.nextEtcd()
    await client.delete().key(`${prefix}/services/dyn/held`)
    await left
    expect((await gw.get('/dyn/x')).status).toBe(503)
    held.release()
    expect(await inflight).toMatchObject({ status: 200, body: 'held done' })

    // No keep-alive: etcd expires the lease and the gateway hears the delete.
    const short = client.lease(1, { autoKeepAlive: false })
    const joinedAgain = gw.nextEtcd()
    await short.put(`${prefix}/services/dyn/short`).value(json({ url: other.url, weight: 2 }))
    await joinedAgain
    expect((await gw.get('/dyn/x')).body).toBe('other')
    const expired = gw.nextEtcd()
    await expired
    expect((await gw.get('/dyn/x')).status).toBe(503)
    expect(((await gw.admin('/status')).json() as StatusBody).config.etcd.registrations).toEqual([])
  })

  it('keeps serving while etcd is down (etcd_up 0), then reconnects and applies only what changed, keeping unchanged routes and pools', async () => {
    const own = await startEtcd()
    const oclient = await createEtcdClient({ endpoints: [own.endpoint] })
    onTestFinished(() => oclient.close())
    const one = await startUpstream({ body: 'one' })
    await oclient.put('/down/upstreams/u').value(json({ targets: [{ url: one.url }] }))
    await oclient.put('/down/routes/a').value(json({ match: { path: '/a' }, upstream: 'u' }))
    await oclient.put('/down/routes/b').value(json({ match: { path: '/b' }, upstream: 'u' }))
    const gw = await startEtcdGateway(etcdSection('/down', own.endpoint), { etcdTuning: { watchdogMs: 500, probeTimeoutMs: 500, callTimeoutMs: 500 } })
    expect((await gw.get('/a')).status).toBe(200)
    const routeA = gw.gateway.table.routes.get('a')
    const target = gw.gateway.table.upstreams.get('u')!.pool.targets[0]!

    const down = nextEvent<[boolean]>(gw.gateway.etcd!.events, 'up', (up) => !up)
    await own.kill()
    await down
    expect(await gw.metric('tollgate_etcd_up')).toBe(0)
    expect((await gw.get('/a')).status).toBe(200)
    expect((await gw.get('/b')).status).toBe(200)
    await gw.log.next((l) => /serving the last good config and retrying/.test(l.msg))

    const up = nextEvent<[boolean]>(gw.gateway.etcd!.events, 'up', (u) => u)
    await own.restart()
    await up
    const changed = gw.nextEtcd()
    await oclient.put('/down/routes/b').value(json({ match: { path: '/b2' }, upstream: 'u' }))
    await changed
    // With this test's 500 ms probe deadline, a watchdog probe right after the restart can miss it on a loaded
    // machine (one clean-clone CI run did): etcd_up drops to 0 and the next read brings it back. What must
    // hold is that it comes back.
    if (!gw.gateway.etcd!.isUp) await nextEvent<[boolean]>(gw.gateway.etcd!.events, 'up', (u) => u)
    expect(await gw.metric('tollgate_etcd_up')).toBe(1)
    expect((await gw.get('/b2')).status).toBe(200)
    expect(gw.gateway.table.routes.get('a')).toBe(routeA) // unchanged route: same compiled object (its state survives)
    expect(gw.gateway.table.upstreams.get('u')!.pool.targets[0]).toBe(target) // same target, same connection pool
  })

  it('merges a reloaded file with the etcd items', async () => {
    const one = await startUpstream({ body: 'one' })
    const two = await startUpstream({ body: 'two' })
    const prefix = newPrefix()
    await client.put(`${prefix}/routes/r`).value(json({ match: { path: '/r' }, upstream: 'b' }))
    const base = `${etcdSection(prefix)}upstreams: { a: { targets: [{ url: ${one.url} }] }, b: { targets: [{ url: ${two.url} }] } }\n`
    const gw = await startEtcdGateway(`${base}routes: [{ id: r, match: { path: /r }, upstream: a }]\n`)
    expect((await gw.get('/r')).body).toBe('two')
    writeFileSync(gw.configPath, `listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n${base.replaceAll('$DIR', gw.dir)}routes:\n  - { id: r, match: { path: /r }, upstream: a }\n  - { id: f, match: { path: /f }, upstream: a }\n`)
    expect(await gw.gateway.reload()).toBe('applied')
    expect((await gw.get('/f')).body).toBe('one')
    expect((await gw.get('/r')).body).toBe('two') // etcd still wins
  })

  it('with --workers 2, the primary reads etcd and every worker serves its changes', async () => {
    const one = await startUpstream({ body: 'one' })
    const prefix = newPrefix()
    await client.put(`${prefix}/upstreams/u`).value(json({ targets: [{ url: one.url }] }))
    await client.put(`${prefix}/routes/first`).value(json({ match: { path: '/first' }, upstream: 'u' }))
    const snapshots = mkdtempSync(join(tmpdir(), 'tollgate-etcd-workers-'))
    onTestFinished(() => rmSync(snapshots, { recursive: true, force: true }))
    const proc = await spawnGateway(`etcd: { endpoints: ["${etcd.endpoint}"], prefix: "${prefix}", snapshotFile: "${snapshots}/snapshot.json" }\n`,
      ['--workers', '2'], { TOLLGATE_LOG_LEVEL: 'warn' })
    const first = await Promise.all(Array.from({ length: 8 }, () => httpRequest(`${proc.url}/first`)))
    expect(first.map((r) => r.status)).toEqual(Array(8).fill(200))
    await client.put(`${prefix}/routes/second`).value(json({ match: { path: '/second' }, upstream: 'u' }))
    // Every worker has it once the primary's /status shows the revision applied; poll the data path.
    let statuses: number[] = []
    for (let i = 0; i < 100; i++) {
      statuses = (await Promise.all(Array.from({ length: 8 }, () => httpRequest(`${proc.url}/second`)))).map((r) => r.status)
      if (statuses.every((s) => s === 200)) break
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(statuses).toEqual(Array(8).fill(200))
    const status = (await httpRequest(`${proc.adminUrl}/status`)).json() as StatusBody & { workers: { ready: number } }
    expect(status.config.etcd).toMatchObject({ up: true, ready: true })
    expect(status.workers.ready).toBe(2)
    expect((await proc.stop()).code).toBe(0)
  })

  it('loads etcd3 (about 28 MB of RSS) only when the config has an etcd: section', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-etcd-lazy-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const main = join(CLI, '..', 'lifecycle', 'gateway.js')
    const script = `
      import { createRequire } from 'node:module'
      const { Gateway } = await import(${JSON.stringify(main)})
      const g = await Gateway.start({ configPath: process.argv[1], env: { TOLLGATE_LOG_LEVEL: 'silent' }, watchFile: false })
      const cache = Object.keys(createRequire(import.meta.url).cache)
      console.log(JSON.stringify({ etcd3: cache.some((k) => k.includes('/node_modules/etcd3/')), grpc: cache.some((k) => k.includes('/@grpc/grpc-js/')) }))
      await g.shutdown()
      process.exit(0)`
    const loaded = (config: string): Promise<{ etcd3: boolean; grpc: boolean }> => {
      const path = join(dir, `${Math.random()}.yaml`)
      writeFileSync(path, `listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n${config}`)
      return new Promise((resolve, reject) => {
        execFile(process.execPath, ['--input-type=module', '-e', script, path], { timeout: 15_000 }, (err, stdout) => {
          if (err !== null) reject(err)
          else resolve(JSON.parse(stdout) as { etcd3: boolean; grpc: boolean })
        })
      })
    }
    expect(await loaded('upstreams: { u: { targets: [{ url: "http://127.0.0.1:9" }] } }\nroutes: [{ id: r, match: { path: /r }, upstream: u }]\n')).toEqual({ etcd3: false, grpc: false })
    expect(await loaded(`etcd: { endpoints: ["${etcd.endpoint}"], prefix: /lazy, snapshotFile: "${dir}/s.json" }\n`)).toEqual({ etcd3: true, grpc: true })
  })

  it('drains and exits 0 on SIGTERM while etcd is unreachable', async () => {
    const own = await startEtcd()
    const snapshots = mkdtempSync(join(tmpdir(), 'tollgate-etcd-exit-'))
    onTestFinished(() => rmSync(snapshots, { recursive: true, force: true }))
    const proc = await spawnGateway(`etcd: { endpoints: ["${own.endpoint}"], prefix: /exit, snapshotFile: "${snapshots}/s.json" }\n`)
    await own.kill()
    // The gateway noticed (its watch broke) and keeps retrying in the background.
    await new Promise<void>((resolve) => {
      const seen = (): boolean => proc.stdout().includes('serving the last good config and retrying')
      if (seen()) return resolve()
      const onData = (): void => {
        if (!seen()) return
        proc.child.stdout!.off('data', onData)
        resolve()
      }
      proc.child.stdout!.on('data', onData)
    })
    const startedMs = Date.now()
    expect((await proc.stop()).code).toBe(0)
    expect(Date.now() - startedMs).toBeLessThan(3_000)
  })
})
