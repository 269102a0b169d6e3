// The etcd commands (README.md "Command line") through the built CLI against a real etcd: put with its
// diff, dry run, prune and one guarded transaction; get round-tripping through validate and put; the
// request size limit; register with its lease; username/password auth and TLS.
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Etcd3 } from 'etcd3'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { createEtcdClient, readPrefix } from '../../src/etcd/client.js'
import { writePlan } from '../../src/etcd/commands/etcd-command.js'
import { desiredItems, planPut } from '../../src/etcd/commands/etcd-diff.js'
import { CLI } from '../helpers/gateway.js'
import { makeEtcdCertificates, startEtcd, startEtcdGateway, type EtcdServer } from '../helpers/etcd.js'
import { startUpstream } from '../helpers/upstream.js'

let etcd: EtcdServer
let client: Etcd3
let dir: string
let prefixes = 0

beforeAll(async () => {
  etcd = await startEtcd({ suite: true })
  client = await createEtcdClient({ endpoints: [etcd.endpoint] })
  dir = mkdtempSync(join(tmpdir(), 'tollgate-etcd-cli-'))
})
afterAll(async () => {
  client.close()
  await etcd.close()
  rmSync(dir, { recursive: true, force: true })
})

interface Run { code: number | null; stdout: string; stderr: string }

function tollgate(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, TOLLGATE_LOG_LEVEL: 'info', ...env }, cwd: dir, timeout: 20_000 },
      (err, stdout, stderr) => resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr }))
  })
}

function file(name: string, text: string): string {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

async function keys(prefix: string): Promise<Record<string, { value: string; modRevision: number }>> {
  const { entries } = await readPrefix(client, `${prefix}/`)
  return Object.fromEntries(entries.map((e) => [e.key, { value: e.value, modRevision: e.modRevision }]))
}

const CONFIG = (prefix: string): string => `etcd: { endpoints: ["${etcd.endpoint}"], prefix: ${prefix} }
upstreams:
  users: { targets: [{ url: "http://127.0.0.1:9001", weight: 2 }], balancer: least-request }
  orders: { targets: [{ url: "\${ORDERS_URL}" }] }
routes:
  - { id: users, match: { path: /api/users/:id, methods: [GET, PUT] }, upstream: users, rewrite: { stripPrefix: /api } }
  - { id: orders, match: { path: /orders/*, headers: { x-version: "2" } }, upstream: orders, priority: 5 }
`

describe('tollgate etcd put and get', () => {
  it('shows the diff, writes every item in one transaction, and get prints YAML that validate accepts and put takes back unchanged', async () => {
    const prefix = `/cli-${++prefixes}`
    const f = file('put.yaml', CONFIG(prefix))
    const env = { ORDERS_URL: 'http://127.0.0.1:9002' }
    const dry = await tollgate(['etcd', 'put', f, '--dry-run'], env)
    expect(dry.code).toBe(0)
    expect(dry.stdout.split('\n').slice(1, 6)).toEqual([
      '+ upstreams/users   (new)',
      '+ upstreams/orders  (new)',
      '+ routes/users      (new)',
      '+ routes/orders     (new)',
      '4 changes (4 new, 0 changed, 0 deleted), 0 unchanged',
    ])
    expect(dry.stdout).toContain('dry run: nothing written.')
    expect(await keys(prefix)).toEqual({})

    const put = await tollgate(['etcd', 'put', f], env)
    expect(put.code).toBe(0)
    const written = await keys(prefix)
    const revisions = new Set(Object.values(written).map((v) => v.modRevision))
    expect(revisions.size).toBe(1) // one transaction
    expect(put.stdout).toContain(`written: 4 changes in one transaction, revision ${[...revisions][0]}.`)
    expect(JSON.parse(written[`${prefix}/upstreams/orders`]!.value)).toEqual({ targets: [{ url: 'http://127.0.0.1:9002' }] }) // ${VAR} substituted
    expect(JSON.parse(written[`${prefix}/routes/users`]!.value)).not.toHaveProperty('id') // the key names it

    const get = await tollgate(['etcd', 'get', '--endpoints', etcd.endpoint, '--prefix', prefix])
    expect(get.code).toBe(0)
    expect(get.stdout).toMatch(new RegExp(`^# etcd ${etcd.endpoint} prefix ${prefix}, revision \\d+\\nupstreams:\\n`))
    const g = file('got.yaml', get.stdout)
    const validate = await tollgate(['validate', g])
    expect(validate.stdout).toContain('2 routes, 2 upstreams')
    expect(validate.code).toBe(0)
    const back = await tollgate(['etcd', 'put', g, '--endpoints', etcd.endpoint, '--prefix', prefix])
    expect(back.code).toBe(0)
    expect(back.stdout).toContain('0 changes (0 new, 0 changed, 0 deleted), 4 unchanged')
    expect(back.stdout).toContain('etcd is up to date; nothing written.')
    expect(await keys(prefix)).toEqual(written)
  })

  it('shows each changed field, keeps items only in etcd unless --prune deletes them', async () => {
    const prefix = `/cli-${++prefixes}`
    const env = { ORDERS_URL: 'http://127.0.0.1:9002' }
    expect((await tollgate(['etcd', 'put', file('a.yaml', CONFIG(prefix))], env)).code).toBe(0)
    const edited = CONFIG(prefix).replace('weight: 2', 'weight: 3').replace('priority: 5', 'priority: 6').replace(/ {2}- \{ id: users.*\n/, '')
    const f = file('b.yaml', edited)
    const dry = await tollgate(['etcd', 'put', f, '--dry-run'], env)
    expect(dry.stdout.split('\n').slice(1, -2)).toEqual([
      '~ upstreams/users  targets[0].weight: 2 -> 3',
      '~ routes/orders    priority: 5 -> 6',
      '  routes/users     (only in etcd: kept; --prune deletes it)',
      '2 changes (0 new, 2 changed, 0 deleted), 1 unchanged',
    ])
    const pruned = await tollgate(['etcd', 'put', f, '--prune'], env)
    expect(pruned.code).toBe(0)
    expect(pruned.stdout).toContain('- routes/users     (deleted: not in the file, --prune)')
    expect(Object.keys(await keys(prefix)).sort()).toEqual([`${prefix}/routes/orders`, `${prefix}/upstreams/orders`, `${prefix}/upstreams/users`])
  })

  it('fails the transaction instead of overwriting when etcd changed after the diff was read', async () => {
    const prefix = `/cli-${++prefixes}`
    await client.put(`${prefix}/routes/a`).value(JSON.stringify({ match: { path: '/a' }, upstream: 'u' }))
    const raw = { upstreams: { u: { targets: [{ url: 'http://127.0.0.1:9001' }] } }, routes: [{ id: 'a', match: { path: '/a2' }, upstream: 'u' }] }
    const read = await readPrefix(client, `${prefix}/`)
    const plan = planPut(prefix, desiredItems(prefix, raw), read.entries, read.revision, false)
    expect(plan.changes.map((c) => `${c.op} ${c.key}`)).toEqual([`add ${prefix}/upstreams/u`, `change ${prefix}/routes/a`])

    // Someone else changes an item between the diff and the write: nothing is written.
    await client.put(`${prefix}/routes/b`).value(JSON.stringify({ match: { path: '/b' }, upstream: 'u' }))
    expect((await writePlan(client, `${prefix}/`, plan)).succeeded).toBe(false)
    expect(Object.keys(await keys(prefix)).sort()).toEqual([`${prefix}/routes/a`, `${prefix}/routes/b`])

    // A concurrent delete of a key the plan overwrites is caught too.
    const again = await readPrefix(client, `${prefix}/`)
    const plan2 = planPut(prefix, desiredItems(prefix, raw), again.entries, again.revision, false)
    await client.delete().key(`${prefix}/routes/a`)
    expect((await writePlan(client, `${prefix}/`, plan2)).succeeded).toBe(false)
    expect(Object.keys(await keys(prefix))).toEqual([`${prefix}/routes/b`])

    // Registrations under services/ come and go all the time: they do not conflict with a put.
    const plan3 = planPut(prefix, desiredItems(prefix, raw), (await readPrefix(client, `${prefix}/`)).entries, (await readPrefix(client, `${prefix}/`)).revision, false)
    await client.put(`${prefix}/services/u/x`).value(JSON.stringify({ url: 'http://127.0.0.1:9009' }))
    expect((await writePlan(client, `${prefix}/`, plan3)).succeeded).toBe(true)
  })

  it('refuses an invalid file with every error located, and writes nothing', async () => {
    const prefix = `/cli-${++prefixes}`
    const f = file('bad.yaml', `etcd: { endpoints: ["${etcd.endpoint}"], prefix: ${prefix} }\nroutes:\n  - { id: r, match: { path: /r }, upstream: nope }\n`)
    const r = await tollgate(['etcd', 'put', f])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`${f}:3:45 routes[0].upstream: upstream "nope" is not defined; no upstreams are defined`)
    expect(r.stderr).toContain('is invalid; nothing written.')
    expect(await keys(prefix)).toEqual({})
  })

  it('explains etcd\'s 1.5 MiB request limit instead of printing a gRPC trace', async () => {
    const prefix = `/cli-${++prefixes}`
    for (const size of [1_600_000, 2_500_000]) {
      const f = file(`big-${size}.yaml`, `etcd: { endpoints: ["${etcd.endpoint}"], prefix: ${prefix} }
upstreams: { u: { targets: [{ url: "http://127.0.0.1:9001" }] } }
routes: [{ id: big, match: { path: /big, headers: { x-big: "${'a'.repeat(size)}" } }, upstream: u }]
`)
      const r = await tollgate(['etcd', 'put', f])
      expect(r.code).toBe(1)
      expect(r.stderr).toBe('tollgate etcd put: etcd refused the request as too large: etcd accepts requests up to 1.5 MiB by default (--max-request-bytes). ' +
        'Split large items, or raise the limit on every etcd member. Nothing was written.\n')
    }
    expect(await keys(prefix)).toEqual({})
  })

  it('reports an unreachable etcd in one line', async () => {
    const r = await tollgate(['etcd', 'get', '--endpoints', 'http://127.0.0.1:9', '--prefix', '/x'])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^tollgate etcd get: etcd is unreachable: connection refused by 127\.0\.0\.1:9\n$/)
  })
})

interface Registered {
  readonly stderr: () => string
  /** Resolves when a log line with this msg has appeared `count` times. */
  logged(msg: string, count?: number): Promise<void>
  stop(signal: NodeJS.Signals): Promise<number | null>
}

function register(args: readonly string[]): Registered {
  const child = spawn(process.execPath, [CLI, 'register', ...args], { env: { ...process.env, TOLLGATE_LOG_LEVEL: 'info' }, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  const waiters: Array<() => void> = []
  child.stderr.on('data', (d: Buffer) => {
    err += d
    for (const w of [...waiters]) w()
  })
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  onTestFinished(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  const count = (msg: string): number => err.split('\n').filter((l) => l.startsWith('{') && (JSON.parse(l) as { msg: string }).msg === msg).length
  return {
    stderr: () => err,
    logged: (msg, n = 1) => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "${msg}" x${n} within 20 s:\n${err}`)), 20_000)
      const check = (): void => {
        if (count(msg) < n) return
        clearTimeout(timer)
        waiters.splice(waiters.indexOf(check), 1)
        resolve()
      }
      waiters.push(check)
      check()
    }),
    async stop(signal) {
      child.kill(signal)
      return exited
    },
  }
}

describe('tollgate register', () => {
  it('puts the instance under a lease, keeps it alive past its TTL, and revokes it on SIGTERM, exiting 0', async () => {
    const prefix = `/reg-${++prefixes}`
    const r = register(['--upstream', 'users', '--url', 'http://127.0.0.1:9401', '--ttl', '1s', '--weight', '3', '--endpoints', etcd.endpoint, '--prefix', prefix])
    await r.logged('registered')
    const key = `${prefix}/services/users/127.0.0.1:9401`
    const first = await client.get(key).exec()
    expect(JSON.parse(first.kvs[0]!.value.toString())).toEqual({ url: 'http://127.0.0.1:9401', weight: 3 })
    const lease = first.kvs[0]!.lease
    expect(lease).not.toBe('0')
    // Twice the TTL later the key is still there, on the same lease: the keep-alive works.
    await new Promise((resolve) => setTimeout(resolve, 2_200))
    expect((await client.get(key).exec()).kvs[0]?.lease).toBe(lease)
    expect(await r.stop('SIGTERM')).toBe(0)
    expect(await client.get(key).string()).toBeNull()
    expect(r.stderr()).toContain('deregistered: lease revoked')
  })

  it('registers again under a new lease after losing its lease, and stops on SIGINT', async () => {
    const prefix = `/reg-${++prefixes}`
    const r = register(['--upstream', 'orders', '--url', 'http://127.0.0.1:9402', '--id', 'one', '--ttl', '2s', '--endpoints', etcd.endpoint, '--prefix', prefix])
    await r.logged('registered')
    const key = `${prefix}/services/orders/one`
    const lease = (await client.get(key).exec()).kvs[0]!.lease
    await etcd.ctl(['lease', 'revoke', BigInt(lease).toString(16)])
    expect(await client.get(key).string()).toBeNull()
    await r.logged('lease lost; registering again')
    await r.logged('registered', 2)
    const renewed = (await client.get(key).exec()).kvs[0]
    expect(renewed?.lease).not.toBe(lease)
    expect(await r.stop('SIGINT')).toBe(0)
    expect(await client.get(key).string()).toBeNull()
  })

  it('refuses bad arguments with usage', async () => {
    const r = await tollgate(['register', '--upstream', 'u', '--url', 'ftp://x', '--endpoints', etcd.endpoint])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^tollgate register: url: must be an http\(s\) URL without a path/)
  })
})

describe('etcd authentication and TLS', () => {
  it('works with etcd.username and etcd.password against an etcd with auth enabled; a wrong password is a clear error', async () => {
    const secured = await startEtcd()
    await secured.ctl(['user', 'add', 'root:rootpw', '--interactive=false'])
    await secured.ctl(['user', 'add', 'gw:gwpw', '--interactive=false'])
    await secured.ctl(['role', 'add', 'tollgate'])
    await secured.ctl(['role', 'grant-permission', 'tollgate', '--prefix=true', 'readwrite', '/auth/'])
    await secured.ctl(['user', 'grant-role', 'gw', 'tollgate'])
    await secured.ctl(['auth', 'enable'])
    const section = `etcd: { endpoints: ["${secured.endpoint}"], prefix: /auth, username: gw, password: "\${ETCD_PASSWORD}", snapshotFile: "$DIR/snapshot.json" }\n`
    const up = await startUpstream({ body: 'authed' })
    const f = file('auth.yaml', `${section.replace('$DIR', dir)}upstreams: { u: { targets: [{ url: "${up.url}" }] } }\nroutes: [{ id: r, match: { path: /r }, upstream: u }]\n`)
    const put = await tollgate(['etcd', 'put', f], { ETCD_PASSWORD: 'gwpw' })
    expect(put.stderr).toBe('')
    expect(put.code).toBe(0)

    const wrong = await tollgate(['etcd', 'get', '--config', f], { ETCD_PASSWORD: 'nope' })
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toMatch(/^tollgate etcd get: etcd authentication failed: .*Check etcd\.username and etcd\.password\.\n$/)

    const gw = await startEtcdGateway(`${section.replace('${ETCD_PASSWORD}', 'gwpw')}upstreams: { u: { targets: [{ url: "${up.url}" }] } }\n`)
    expect((await gw.get('/r')).body).toBe('authed')
    const changed = gw.nextEtcd()
    await tollgate(['etcd', 'put', file('auth2.yaml', `${section.replace('$DIR', dir)}upstreams: { u: { targets: [{ url: "${up.url}" }] } }\nroutes: [{ id: r2, match: { path: /r2 }, upstream: u }]\n`), '--prune'], { ETCD_PASSWORD: 'gwpw' })
    await changed
    expect((await gw.get('/r2')).body).toBe('authed')
    expect((await gw.get('/r')).status).toBe(404)
  })

  it('talks TLS with a client certificate (etcd.tls ca, cert, key)', async () => {
    const certs = mkdtempSync(join(tmpdir(), 'tollgate-etcd-tls-'))
    onTestFinished(() => rmSync(certs, { recursive: true, force: true }))
    const { server, client: mine } = makeEtcdCertificates(certs)
    const secured = await startEtcd({ tls: server })
    const f = file('tls.yaml', `etcd:
  endpoints: ["${secured.endpoint}"]
  prefix: /tls
  tls: { ca: "${mine.ca}", cert: "${mine.cert}", key: "${mine.key}" }
upstreams: { u: { targets: [{ url: "http://127.0.0.1:9001" }] } }
routes: [{ id: r, match: { path: /r }, upstream: u }]
`)
    // grpc-js names the IP as TLS server name, which Node warns about (DEP0123); nothing else is printed.
    const nodeWarnings = (text: string): string => text.split('\n').filter((l) => l !== '' && !/^\(node:\d+\) \[DEP0123\]|^\(Use `node --trace-deprecation/.test(l)).join('\n')
    const put = await tollgate(['etcd', 'put', f])
    expect(nodeWarnings(put.stderr)).toBe('')
    expect(put.code).toBe(0)
    const get = await tollgate(['etcd', 'get', '--config', f])
    expect(get.stdout).toContain('  - id: r\n')
    const noCert = await tollgate(['etcd', 'get', '--endpoints', secured.endpoint, '--prefix', '/tls', '--ca', mine.ca])
    expect(noCert.code).toBe(1)
    expect(nodeWarnings(noCert.stderr)).toMatch(/^tollgate etcd get: [^\n]+$/) // one line, no trace
  })
})
