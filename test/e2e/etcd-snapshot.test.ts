// A stale etcd snapshot never wins over a live etcd (README "Running several instances against etcd", "When
// etcd is not there"): the gateway serves `snapshotFile` only until etcd answers its first full read, and
// that read replaces the snapshot's items whatever its revision. Each case is a gateway that wrote its
// snapshot against one etcd, then a gateway started on that snapshot against an etcd that is not the one
// the snapshot came from (a new cluster, the same member wiped or restored from a backup), or the same one
// with changes and a compaction the gateway missed; and an etcd wiped under a running gateway. Real etcd
// processes on loopback, stopped by their PIDs.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Etcd3 } from 'etcd3'
import { describe, expect, it, onTestFinished } from 'vitest'
import { createEtcdClient } from '../../src/etcd/client.js'
import { nextEvent, startEtcd, startEtcdGateway, type EtcdServer, type EtcdTestGateway } from '../helpers/etcd.js'
import { startUpstream } from '../helpers/upstream.js'

const PREFIX = '/snap'
const json = (v: unknown): string => JSON.stringify(v)
const route = (path: string): string => json({ match: { path }, upstream: 'u' })

interface Snapshot { revision: number; clusterId?: string; items: Array<{ key: string }> }

/** A directory for the snapshot file both gateways of a case share. */
function snapshotPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-etcd-stale-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  return join(dir, 'etcd-snapshot.json')
}

async function clientOf(etcd: EtcdServer): Promise<Etcd3> {
  const client = await createEtcdClient({ endpoints: [etcd.endpoint] })
  onTestFinished(() => client.close())
  return client
}

/** The file has upstream `u` and route /file; etcd routes use `u`. */
async function gatewayYaml(endpoint: string, snapshot: string): Promise<string> {
  const up = await startUpstream({ body: 'up' })
  return `etcd: { endpoints: ["${endpoint}"], prefix: "${PREFIX}", snapshotFile: "${snapshot}" }
upstreams: { u: { targets: [{ url: "${up.url}" }] } }
routes: [{ id: file, match: { path: /file }, upstream: u }]
`
}

/** Status of each path, to compare in one expect. */
async function statuses(gw: EtcdTestGateway, paths: readonly string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const p of paths) out[p] = (await gw.get(p)).status
  return out
}

/** Gateway A against `etcd` serves routes x1..x3 (with a few more writes, so the revision is well up), then stops: the snapshot holds them. */
async function writeSnapshotFrom(etcd: EtcdServer, snapshot: string): Promise<Snapshot> {
  const client = await clientOf(etcd)
  for (let i = 0; i < 3; i++) await client.put(`${PREFIX}/routes/x1`).value(route(`/x1`))
  await client.put(`${PREFIX}/routes/x2`).value(route('/x2'))
  await client.put(`${PREFIX}/routes/x3`).value(route('/x3'))
  const a = await startEtcdGateway(await gatewayYaml(etcd.endpoint, snapshot))
  expect(await statuses(a, ['/x1', '/x2', '/x3'])).toEqual({ '/x1': 200, '/x2': 200, '/x3': 200 })
  await a.close()
  const written = JSON.parse(readFileSync(snapshot, 'utf8')) as Snapshot
  expect(written.items.map((i) => i.key)).toEqual([`${PREFIX}/routes/x1`, `${PREFIX}/routes/x2`, `${PREFIX}/routes/x3`])
  return written
}

const wentBack = (from: number, to: number): RegExp =>
  new RegExp(`^etcd: etcd revision went back from ${from} to ${to}: etcd was replaced or restored; serving etcd's items$`)

describe('a stale etcd snapshot against a live etcd', () => {
  it('a new etcd at a lower revision: serves its items, not the snapshot\'s, and watches from its revision', async () => {
    const snapshot = snapshotPath()
    const first = await writeSnapshotFrom(await startEtcd(), snapshot)
    const second = await startEtcd()
    const c2 = await clientOf(second)
    await c2.put(`${PREFIX}/routes/y1`).value(route('/y1'))
    const revision = Number((await c2.get(`${PREFIX}/routes/y1`).exec()).header.revision)
    expect(revision).toBeLessThan(first.revision)

    const b = await startEtcdGateway(await gatewayYaml(second.endpoint, snapshot))
    expect(await statuses(b, ['/file', '/y1', '/x1', '/x2', '/x3'])).toEqual({ '/file': 200, '/y1': 200, '/x1': 404, '/x2': 404, '/x3': 404 })
    expect(b.log.lines.filter((l) => wentBack(first.revision, revision).test(l.msg))).toHaveLength(1)
    expect(b.gateway.etcd!.revision).toBe(revision)
    const clusterId = String((await c2.get('/none').exec()).header.cluster_id)
    expect(b.gateway.etcd!.status().clusterId).toBe(clusterId)
    expect(b.gateway.etcd!.status().clusterId).not.toBe(first.clusterId)

    // The watch resumes from etcd's own revision: a change at revision + 1 arrives.
    const applied = b.nextEtcd()
    await c2.put(`${PREFIX}/routes/y2`).value(route('/y2'))
    await applied
    expect((await b.get('/y2')).status).toBe(200)
    await b.close()
    const rewritten = JSON.parse(readFileSync(snapshot, 'utf8')) as Snapshot
    expect(rewritten.items.map((i) => i.key)).toEqual([`${PREFIX}/routes/y1`, `${PREFIX}/routes/y2`])
    expect(rewritten.revision).toBe(revision + 1)
    expect(rewritten.clusterId).toBe(clusterId)
  })

  it('a new, empty etcd: no etcd routes at all, only the file\'s', async () => {
    const snapshot = snapshotPath()
    const first = await writeSnapshotFrom(await startEtcd(), snapshot)
    const empty = await startEtcd()
    const b = await startEtcdGateway(await gatewayYaml(empty.endpoint, snapshot))
    expect(await statuses(b, ['/file', '/x1', '/x2', '/x3'])).toEqual({ '/file': 200, '/x1': 404, '/x2': 404, '/x3': 404 })
    expect(b.gateway.etcd!.config.routes.map((r) => r.id)).toEqual(['file'])
    expect(b.log.lines.filter((l) => wentBack(first.revision, 1).test(l.msg))).toHaveLength(1)
    // The stale snapshot is overwritten: a later start with etcd down does not bring x1..x3 back.
    await b.close()
    expect((JSON.parse(readFileSync(snapshot, 'utf8')) as Snapshot).items).toEqual([])
  })

  it('the same etcd member wiped while the gateway was down (same cluster id, lower revision): started from the snapshot, it takes etcd\'s items once etcd answers', async () => {
    const snapshot = snapshotPath()
    const etcd = await startEtcd()
    const first = await writeSnapshotFrom(etcd, snapshot)
    await etcd.stop()
    // Started with etcd down: the snapshot serves, not ready.
    const b = await startEtcdGateway(await gatewayYaml(etcd.endpoint, snapshot), { ready: false })
    expect(b.gateway.etcd!.status()).toMatchObject({ startedFrom: 'snapshot', ready: false })
    expect(await statuses(b, ['/x1', '/y1'])).toEqual({ '/x1': 200, '/y1': 404 })

    rmSync(etcd.dataDir, { recursive: true, force: true })
    const ready = nextEvent(b.gateway.etcd!.events, 'ready')
    await etcd.restart()
    const client = await clientOf(etcd)
    // Same member name, peer URL and cluster token: the wiped etcd has the same cluster id; only the revision tells.
    expect(String((await client.get('/none').exec()).header.cluster_id)).toBe(first.clusterId)
    const hasY1 = b.nextEtcd(() => b.gateway.etcd!.config.routes.some((r) => r.id === 'y1'))
    await client.put(`${PREFIX}/routes/y1`).value(route('/y1'))
    await ready
    await hasY1
    expect(await statuses(b, ['/file', '/y1', '/x1', '/x2', '/x3'])).toEqual({ '/file': 200, '/y1': 200, '/x1': 404, '/x2': 404, '/x3': 404 })
    expect(b.log.lines.filter((l) => /^etcd: etcd revision went back from \d+ to \d+: etcd was replaced or restored; serving etcd's items$/.test(l.msg)
      && l.msg.includes(`from ${first.revision} `))).toHaveLength(1)
  })

  it('the etcd member wiped and restarted under a running gateway: it notices the revision went back and serves etcd\'s items', async () => {
    const snapshot = snapshotPath()
    const etcd = await startEtcd()
    const client = await clientOf(etcd)
    for (let i = 0; i < 5; i++) await client.put(`${PREFIX}/routes/x1`).value(route('/x1'))
    const b = await startEtcdGateway(await gatewayYaml(etcd.endpoint, snapshot))
    expect((await b.get('/x1')).status).toBe(200)
    const had = b.gateway.etcd!.revision

    await etcd.stop()
    rmSync(etcd.dataDir, { recursive: true, force: true })
    await etcd.restart()
    const onlyY1 = b.nextEtcd(() => b.gateway.etcd!.config.routes.map((r) => r.id).join() === 'file,y1')
    await client.put(`${PREFIX}/routes/y1`).value(route('/y1'))
    await onlyY1
    expect(await statuses(b, ['/file', '/y1', '/x1'])).toEqual({ '/file': 200, '/y1': 200, '/x1': 404 })
    expect(b.log.lines.filter((l) => new RegExp(`^etcd: etcd revision went back from ${had} to \\d+: etcd was replaced or restored; serving etcd's items$`).test(l.msg))).toHaveLength(1)
    // And it watches this etcd from its own revision.
    const y2 = b.nextEtcd(() => b.gateway.etcd!.config.routes.some((r) => r.id === 'y2'))
    await client.put(`${PREFIX}/routes/y2`).value(route('/y2'))
    await y2
    expect((await b.get('/y2')).status).toBe(200)
  })

  it('the same etcd restored from a backup taken before the snapshot (etcdctl snapshot restore): serves the backup\'s items', async () => {
    const snapshot = snapshotPath()
    const etcd = await startEtcd()
    const client = await clientOf(etcd)
    await client.put(`${PREFIX}/routes/x1`).value(route('/x1'))
    const backup = join(snapshot, '..', 'backup.db')
    await etcd.ctl(['snapshot', 'save', backup])
    const first = await writeSnapshotFrom(etcd, snapshot) // x1 (again), x2, x3

    // Restored as the same member of the same cluster (its own name, peer URL and cluster token).
    const args = readFileSync(`/proc/${etcd.pid}/cmdline`, 'utf8').split('\0')
    const flag = (name: string): string => args[args.indexOf(name) + 1]!
    await etcd.stop()
    rmSync(etcd.dataDir, { recursive: true, force: true })
    await etcd.ctl(['snapshot', 'restore', backup, '--data-dir', etcd.dataDir, '--name', flag('--name'), '--initial-cluster', flag('--initial-cluster'),
      '--initial-cluster-token', flag('--initial-cluster-token'), '--initial-advertise-peer-urls', flag('--initial-advertise-peer-urls')])
    await etcd.restart()
    const header = (await client.get('/none').exec()).header
    expect(String(header.cluster_id)).toBe(first.clusterId)
    expect(Number(header.revision)).toBeLessThan(first.revision)

    const b = await startEtcdGateway(await gatewayYaml(etcd.endpoint, snapshot))
    expect(await statuses(b, ['/x1', '/x2', '/x3'])).toEqual({ '/x1': 200, '/x2': 404, '/x3': 404 })
    expect(b.log.lines.filter((l) => wentBack(first.revision, Number(header.revision)).test(l.msg))).toHaveLength(1)
  })

  it('another etcd cluster at a higher revision: keeps nothing of the snapshot, not even as the last good version of an item etcd holds invalid', async () => {
    const snapshot = snapshotPath()
    const first = await writeSnapshotFrom(await startEtcd(), snapshot)
    const other = await startEtcd()
    const c2 = await clientOf(other)
    for (let i = 0; i < first.revision + 3; i++) await c2.put(`${PREFIX}/routes/y1`).value(route('/y1'))
    await c2.put(`${PREFIX}/routes/x1`).value('{ not json')

    const b = await startEtcdGateway(await gatewayYaml(other.endpoint, snapshot))
    expect(await statuses(b, ['/file', '/y1', '/x1', '/x2', '/x3'])).toEqual({ '/file': 200, '/y1': 200, '/x1': 404, '/x2': 404, '/x3': 404 })
    expect(b.gateway.etcd!.rejections).toMatchObject([{ key: `${PREFIX}/routes/x1`, keptRevision: null }])
    expect(b.log.lines.filter((l) => /^etcd: etcd's cluster id changed from \d+ to \d+: etcd was replaced; serving etcd's items$/.test(l.msg))).toHaveLength(1)
  })

  it('the same etcd, changed and compacted while the gateway was down: takes its state, deletes included, keeping the last good version of an item now invalid', async () => {
    const snapshot = snapshotPath()
    const etcd = await startEtcd()
    const first = await writeSnapshotFrom(etcd, snapshot)
    const client = await clientOf(etcd)
    await client.delete().key(`${PREFIX}/routes/x2`)
    await client.put(`${PREFIX}/routes/x4`).value(route('/x4'))
    await client.put(`${PREFIX}/routes/x3`).value('{ not json')
    const now = Number((await client.get(`${PREFIX}/routes/x4`).exec()).header.revision)
    await etcd.ctl(['compact', String(now)])

    const b = await startEtcdGateway(await gatewayYaml(etcd.endpoint, snapshot))
    expect(b.gateway.etcd!.status().startedFrom).toBe('snapshot')
    expect(await statuses(b, ['/x1', '/x2', '/x3', '/x4'])).toEqual({ '/x1': 200, '/x2': 404, '/x3': 200, '/x4': 200 })
    expect(b.gateway.etcd!.rejections).toMatchObject([{ key: `${PREFIX}/routes/x3`, keptRevision: expect.any(Number) }])
    expect(b.gateway.etcd!.revision).toBe(now)
    expect(now).toBeGreaterThan(first.revision)
    expect(b.log.lines.filter((l) => /went back|cluster id changed/.test(l.msg))).toEqual([])
  })
})
