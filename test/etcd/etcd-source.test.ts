// The etcd source against a real etcd (failure modes: src/etcd/source.ts, src/etcd/watch.ts): paginated
// read then watch, recovery from a watch etcd canceled after a compaction, the watchdog on a frozen etcd,
// start from the snapshot while etcd is down, and atomic snapshot writes.
import { mkdtempSync, readdirSync, readFileSync, rmSync, watch } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import type { Etcd3 } from 'etcd3'
import { createEtcdClient } from '../../src/etcd/client.js'
import { EtcdConfigSource, type EtcdSourceOptions, type EtcdUpdate } from '../../src/etcd/source.js'
import { loadConfigText } from '../../src/config/load.js'
import type { Config } from '../../src/config/schema.js'
import { captureLog, nextEvent, startEtcd, startTcpProxy, type EtcdServer } from '../helpers/etcd.js'

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

interface Started {
  readonly source: EtcdConfigSource
  readonly prefix: string
  readonly dir: string
  readonly log: ReturnType<typeof captureLog>
}

/** A source on a fresh prefix; `endpoint` defaults to the suite's etcd. */
async function openSource(options: { endpoint?: string; prefix?: string; dir?: string; tuning?: Partial<EtcdSourceOptions> } = {}): Promise<Started> {
  const prefix = options.prefix ?? `/src-${++prefixes}`
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'tollgate-etcd-src-'))
  const file = loadConfigText(`
etcd: { endpoints: ["${options.endpoint ?? etcd.endpoint}"], prefix: "${prefix}", snapshotFile: "${join(dir, 'snapshot.json')}" }
upstreams: { base: { targets: [{ url: "http://127.0.0.1:9001" }] } }
routes: [{ id: base, match: { path: /base }, upstream: base }]
`, 'routes.yaml', {}).config
  const log = captureLog()
  const source = await EtcdConfigSource.open({ settings: file.etcd!, file, log: log.logger, retryCapMs: 500, ...options.tuning })
  onTestFinished(async () => {
    await source.close()
    if (options.dir === undefined) rmSync(dir, { recursive: true, force: true })
  })
  return { source, prefix, dir, log }
}

const route = (path: string): string => JSON.stringify({ match: { path }, upstream: 'base' })
const ids = (c: Config): string[] => c.routes.map((r) => r.id)
const nextUpdate = (source: EtcdConfigSource, match: (u: EtcdUpdate) => boolean): Promise<[EtcdUpdate]> =>
  nextEvent<[EtcdUpdate]>(source.events, 'update', match)

describe('the etcd source', () => {
  it('reads a prefix larger than one page at one revision, then applies puts and deletes from the watch', async () => {
    const prefix = `/src-${++prefixes}`
    for (let i = 0; i < 10; i++) await client.put(`${prefix}/routes/r${i}`).value(route(`/r${i}`))
    await client.put(`${prefix}/other/ignored`).value('x')
    const { source } = await openSource({ prefix, tuning: { pageSize: 3 } })
    expect(source.isReady).toBe(false)
    const ready = nextEvent(source.events, 'ready')
    source.start()
    await ready
    expect(ids(source.config)).toEqual(['base', ...[0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => `r${i}`)])
    expect(source.isUp).toBe(true)

    const changed = nextUpdate(source, (u) => ids(u.config).includes('r10'))
    const txn = await client.if(`${prefix}/routes/r0`, 'Version', '>', 0).then(
      client.put(`${prefix}/routes/r10`).value(route('/r10')),
      client.delete().key(`${prefix}/routes/r0`),
    ).commit()
    const [update] = await changed
    expect(ids(update.config)).not.toContain('r0')
    expect(update).toMatchObject({ changed: true, cause: 'watch', revision: Number(txn.header.revision) })
  })

  it('recovers when etcd cancels its watch after a compaction: reads the prefix again and watches on', async () => {
    const proxy = await startTcpProxy(etcd.clientPort)
    // No watchdog here: the watch itself must come back, from its old revision, and be canceled.
    const { source, prefix, log } = await openSource({ endpoint: proxy.endpoint, tuning: { watchdogMs: 600_000 } })
    await client.put(`${prefix}/routes/a`).value(route('/a'))
    const ready = nextEvent(source.events, 'ready')
    source.start()
    await ready
    expect(ids(source.config)).toEqual(['base', 'a'])

    const down = nextEvent<[boolean]>(source.events, 'up', (up) => !up)
    proxy.cut()
    await down
    await client.put(`${prefix}/routes/b`).value(route('/b'))
    await client.delete().key(`${prefix}/routes/a`)
    for (let i = 0; i < 5; i++) await client.put(`/elsewhere/${i}`).value('x')
    const latest = await client.put('/elsewhere/last').value('x')
    await client.kv.compact({ revision: latest.header.revision, physical: true })

    const recovered = nextUpdate(source, (u) => ids(u.config).includes('b'))
    proxy.restore()
    const [update] = await recovered
    expect(ids(update.config)).toEqual(['base', 'b'])
    // etcd3 resumes the watch from its old revision, which is compacted: etcd cancels it.
    await log.next((l) => /the watch was canceled by etcd/.test(l.msg))
    expect(source.status().resyncs).toBeGreaterThanOrEqual(1)
    expect(source.status().lastResync?.reason).toMatch(/the watch was canceled by etcd/)
    // The new watch delivers what comes next.
    const next = nextUpdate(source, (u) => ids(u.config).includes('c'))
    await client.put(`${prefix}/routes/c`).value(route('/c'))
    expect(ids((await next)[0].config)).toEqual(['base', 'b', 'c'])
  })

  it('resumes a watch broken for a moment from its own revision, losing no change', async () => {
    const proxy = await startTcpProxy(etcd.clientPort)
    const { source, prefix } = await openSource({ endpoint: proxy.endpoint, tuning: { watchdogMs: 600_000 } })
    const ready = nextEvent(source.events, 'ready')
    source.start()
    await ready
    const down = nextEvent<[boolean]>(source.events, 'up', (up) => !up)
    proxy.cut()
    await down
    for (let i = 0; i < 5; i++) await client.put(`${prefix}/routes/x${i}`).value(route(`/x${i}`))
    await client.delete().key(`${prefix}/routes/x2`)
    const back = nextUpdate(source, (u) => ids(u.config).length === 5)
    proxy.restore()
    expect(ids((await back)[0].config)).toEqual(['base', 'x0', 'x1', 'x3', 'x4'])
    expect(source.isUp).toBe(true)
  })

  it('notices a frozen etcd with its watchdog, keeps the config, and reads again once etcd thaws', async () => {
    const frozen = await startEtcd()
    const fclient = await createEtcdClient({ endpoints: [frozen.endpoint] })
    onTestFinished(() => fclient.close())
    await fclient.put('/frozen/routes/kept').value(route('/kept'))
    const { source, log } = await openSource({ endpoint: frozen.endpoint, prefix: '/frozen', tuning: { watchdogMs: 300, probeTimeoutMs: 300, callTimeoutMs: 1_000 } })
    const ready = nextEvent(source.events, 'ready')
    source.start()
    await ready
    const down = nextEvent<[boolean]>(source.events, 'up', (up) => !up)
    frozen.pause()
    await down
    await log.next((l) => /etcd did not answer the watchdog read/.test(l.msg))
    expect(ids(source.config)).toEqual(['base', 'kept'])
    expect(source.status().up).toBe(false)
    const up = nextEvent<[boolean]>(source.events, 'up', (u) => u)
    frozen.resume()
    await up
    const changed = nextUpdate(source, (u) => ids(u.config).includes('after'))
    await fclient.put('/frozen/routes/after').value(route('/after'))
    expect(ids((await changed)[0].config)).toEqual(['base', 'after', 'kept'])
  })

  it('starts from the snapshot while etcd is down, not ready, then takes etcd\'s state on the first read', async () => {
    const own = await startEtcd()
    const oclient = await createEtcdClient({ endpoints: [own.endpoint] })
    onTestFinished(() => oclient.close())
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-etcd-snap-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    await oclient.put('/snap/routes/s1').value(route('/s1'))
    await oclient.put('/snap/services/base/i1').value(JSON.stringify({ url: 'http://127.0.0.1:9501' }))
    const first = await openSource({ endpoint: own.endpoint, prefix: '/snap', dir })
    const ready = nextEvent(first.source.events, 'ready')
    first.source.start()
    await ready
    await first.source.close()
    const snapshot = JSON.parse(readFileSync(join(dir, 'snapshot.json'), 'utf8')) as { prefix: string; items: Array<{ key: string }> }
    expect(snapshot.prefix).toBe('/snap')
    expect(snapshot.items.map((i) => i.key)).toEqual(['/snap/routes/s1', '/snap/services/base/i1'])

    await own.stop()
    const second = await openSource({ endpoint: own.endpoint, prefix: '/snap', dir, tuning: { callTimeoutMs: 500 } })
    expect(ids(second.source.config)).toEqual(['base', 's1'])
    expect(second.source.config.upstreams['base']!.targets.map((t) => t.url)).toEqual(['http://127.0.0.1:9001', 'http://127.0.0.1:9501'])
    expect(second.source.status()).toMatchObject({ startedFrom: 'snapshot', ready: false, up: false })
    second.source.start()
    await second.log.next((l) => /serving the last good config and retrying/.test(l.msg))
    expect(second.source.isReady).toBe(false)

    const readyAgain = nextEvent(second.source.events, 'ready')
    await own.restart()
    await readyAgain
    expect(second.source.status()).toMatchObject({ ready: true, up: true })
    const changed = nextUpdate(second.source, (u) => ids(u.config).includes('s2') && !ids(u.config).includes('s1') && u.config.upstreams['base']!.targets.length === 1)
    await oclient.put('/snap/routes/s2').value(route('/s2'))
    await oclient.delete().key('/snap/routes/s1')
    await oclient.delete().key('/snap/services/base/i1')
    await changed
    expect(ids(second.source.config)).toEqual(['base', 's2'])
    expect(second.source.config.upstreams['base']!.targets.map((t) => t.url)).toEqual(['http://127.0.0.1:9001'])
  })

  it('writes the snapshot atomically after each applied change: a reader never sees half a file', async () => {
    const { source, prefix, dir } = await openSource()
    const ready = nextEvent(source.events, 'ready')
    source.start()
    await ready
    // A first snapshot exists before the burst, so the reader has a file to read throughout.
    const created = new Promise<void>((resolve) => {
      const watcher = watch(dir, (_event, name) => {
        if (name !== 'snapshot.json') return
        watcher.close()
        resolve()
      })
    })
    await client.put(`${prefix}/routes/first`).value(route('/first'))
    await created
    let reading = true
    let reads = 0
    let torn = 0
    const reader = (async () => {
      while (reading) {
        try {
          JSON.parse(readFileSync(join(dir, 'snapshot.json'), 'utf8'))
          reads++
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') torn++
        }
        await new Promise((r) => setImmediate(r))
      }
    })()
    const last = nextUpdate(source, (u) => ids(u.config).includes('w39'))
    for (let i = 0; i < 40; i++) await client.put(`${prefix}/routes/w${i}`).value(route(`/w${i}`))
    await last
    await source.close()
    reading = false
    await reader
    expect(torn).toBe(0)
    expect(reads).toBeGreaterThan(0)
    const snapshot = JSON.parse(readFileSync(join(dir, 'snapshot.json'), 'utf8')) as { items: Array<{ key: string }> }
    expect(snapshot.items).toHaveLength(41)
    expect(readdirSync(dir)).toEqual(['snapshot.json']) // no temp file left behind
  })

  it('warns at most once per period while etcd stays unreachable, counting the warnings it held back', async () => {
    const { source, log } = await openSource({ endpoint: 'http://127.0.0.1:9', tuning: { retryBaseMs: 20, retryCapMs: 40, warnEveryMs: 400, callTimeoutMs: 200 } })
    const startedMs = Date.now()
    source.start()
    const isWarning = (l: { level: number; msg: string }): boolean => l.level === 40 && /serving the last good config and retrying/.test(l.msg)
    await log.next(isWarning)
    await log.next((l) => isWarning(l) && l !== log.lines.find(isWarning))
    const warnings = log.lines.filter(isWarning)
    expect(warnings).toHaveLength(2)
    expect(Number(warnings[1]!['time']) - Number(warnings[0]!['time'])).toBeGreaterThanOrEqual(400)
    expect(warnings[1]!['suppressed']).toBeGreaterThan(0) // it kept retrying in between
    expect(source.status()).toMatchObject({ up: false, ready: false, lastError: 'etcd is unreachable: connection refused by 127.0.0.1:9' })
    expect(Date.now() - startedMs).toBeLessThan(5_000)
  })

  it('says once that it cannot write the snapshot, shows it in status, and serves on', async () => {
    const prefix = `/src-${++prefixes}`
    const file = loadConfigText(`etcd: { endpoints: ["${etcd.endpoint}"], prefix: "${prefix}", snapshotFile: "/dev/null/snapshot.json" }
upstreams: { base: { targets: [{ url: "http://127.0.0.1:9001" }] } }
`, 'routes.yaml', {}).config
    const log = captureLog()
    const source = await EtcdConfigSource.open({ settings: file.etcd!, file, log: log.logger })
    onTestFinished(() => source.close())
    const ready = nextEvent(source.events, 'ready')
    source.start()
    await ready
    for (let i = 0; i < 3; i++) {
      const changed = nextUpdate(source, (u) => ids(u.config).includes(`n${i}`))
      await client.put(`${prefix}/routes/n${i}`).value(route(`/n${i}`))
      await changed
    }
    await source.close()
    const warnings = log.lines.filter((l) => l.msg.startsWith('etcd: snapshotFile: '))
    expect(warnings.map((w) => w.msg)).toEqual([expect.stringMatching(/^etcd: snapshotFile: cannot create \/dev\/null: /)])
    expect(source.status().snapshot).toMatchObject({ path: '/dev/null/snapshot.json', writtenAt: null, error: expect.stringMatching(/^cannot create \/dev\/null: /) })
    expect(ids(source.config)).toEqual(['n0', 'n1', 'n2'])
  })
})
