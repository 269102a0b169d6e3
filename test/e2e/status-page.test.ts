// The status page (README "Status page") in a real headless Chromium against a real gateway process and
// real upstreams: a target whose upstream server stopped shows as down in the first refresh that starts
// after /status says so, the page redraws in place, loads nothing but itself and /status, and shows rates,
// breakers, the limiter store, the JWKS of JWT routes and rejected reloads; user-controlled text stays text.
//
// STATUS_PAGE_SCREENSHOT=docs/status-page.png npx vitest run test/e2e/status-page.test.ts
// refreshes the README's screenshot; otherwise it goes to a temporary directory.
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { Page } from 'playwright-core'
import { exportJWK, SignJWT } from 'jose'
import { httpRequest, spawnGateway, startGateway } from '../helpers/gateway.js'
import { startHealthUpstream, until } from '../helpers/health-upstream.js'
import { startBrowser } from '../helpers/browser.js'
import { listenForTest } from '../helpers/listen.js'
import { startUpstream } from '../helpers/upstream.js'

const REFRESH_S = 0.5

interface Status {
  readonly config: { readonly rejected: readonly unknown[] }
  readonly upstreams: ReadonlyArray<{ readonly targets: ReadonlyArray<{ readonly url: string; readonly health: { readonly state: string } }> }>
}

async function statusOf(adminUrl: string): Promise<Status> {
  return (await httpRequest(adminUrl + '/status')).json() as Status
}

async function targetState(adminUrl: string, url: string): Promise<string | undefined> {
  return (await statusOf(adminUrl)).upstreams.flatMap((u) => u.targets).find((t) => t.url === url)?.health.state
}

/** Waits until the page drew an answer to a fetch it started after `t` (epoch ms), bounded; its refresh count. */
async function drawnAfter(page: Page, t: number): Promise<number> {
  const handle = await page.waitForFunction((after) => Number(document.body.dataset['fetchedAt'] ?? 0) > after && Number(document.body.dataset['refreshes']),
    t, { polling: 10, timeout: REFRESH_S * 1000 + 10_000 })
  return (await handle.jsonValue()) as number
}

/** Waits for the refresh after the one counted `n`, bounded. */
async function refreshAfter(page: Page, n: number): Promise<number> {
  const handle = await page.waitForFunction((after) => Number(document.body.dataset['refreshes'] ?? 0) > after && Number(document.body.dataset['refreshes']),
    n, { polling: 10, timeout: 10_000 })
  return (await handle.jsonValue()) as number
}

function shown(page: Page, selector: string): Promise<string[]> {
  return page.$$eval(selector, (els) => els.map((e) => e.textContent ?? ''))
}

describe('status page', () => {
  it('shows a target whose upstream server stopped as down in the first refresh after /status says so', async () => {
    const a = await startHealthUpstream('a')
    const b = await startHealthUpstream('b')
    let billed = 0
    const billing = await startUpstream({ handler: (_req, res) => { res.writeHead(++billed % 3 === 0 ? 503 : 200); res.end() } })
    const config = `
upstreams:
  users:
    targets: [{ url: ${a.url} }, { url: ${b.url} }]
    healthCheck: { active: { path: /healthz, interval: 100ms, timeout: 200ms, healthyThreshold: 1, unhealthyThreshold: 2 } }
  billing: { targets: [{ url: ${billing.url} }], retry: { attempts: 0 } }
routes:
  - id: users
    match: { path: /api/users/*, methods: [GET] }
    upstream: users
    rateLimit: [{ name: per-client, algorithm: token-bucket, rate: 100, period: 1s }]
    circuitBreaker: { window: 60s, minRequests: 20, errorRate: 50, openFor: 5s }
  - { id: billing, match: { path: /api/billing/* }, upstream: billing }
`
    const proc = await spawnGateway(config)
    const browser = await startBrowser()
    const { page, problems, requests } = await browser.page()
    // Every answer the page fetched from /status, in order: the n-th is what its n-th refresh drew.
    const answers: Status[] = []
    let fetched = 0
    page.on('response', (r) => {
      if (new URL(r.url()).pathname !== '/status') return
      const i = fetched++
      void r.json().then((j: Status) => { answers[i] = j })
    })
    await page.goto(`${proc.adminUrl}/?refresh=${REFRESH_S}`)

    const targetRow = (url: string): string => `#upstreams tr[data-target="${url}"]`
    await page.waitForFunction((sel) => document.querySelector(sel)?.getAttribute('data-state') === 'up', targetRow(b.url), { polling: 20, timeout: 10_000 })
    expect(await page.textContent(`${targetRow(a.url)} td.state`)).toBe('up')
    // What each refresh drew for both targets, noted as it finishes (a MutationObserver runs once the whole
    // redraw is done); and a marker that a page reloading itself instead of redrawing would lose.
    await page.evaluate((urls) => {
      const w = window as unknown as { sameDocument: boolean; drawn: Array<{ n: number; fetchedAt: number; states: Array<string | null> }> }
      w.sameDocument = true
      w.drawn = []
      new MutationObserver(() => w.drawn.push({
        n: Number(document.body.dataset['refreshes']),
        fetchedAt: Number(document.body.dataset['fetchedAt']),
        states: urls.map((u) => document.querySelector(`#upstreams tr[data-target="${u}"] td.state`)?.textContent ?? null),
      })).observe(document.body, { attributes: true, attributeFilter: ['data-refreshes'] })
    }, [a.url, b.url])

    for (let i = 0; i < 4; i++) expect((await httpRequest(`${proc.url}/api/users/${i}`)).status).toBe(200)
    for (let i = 0; i < 3; i++) await httpRequest(`${proc.url}/api/billing/${i}`)

    // A refresh drew b up under observation, so the one where it goes down is among those noted.
    await page.waitForFunction(() => (window as unknown as { drawn: Array<{ states: Array<string | null> }> }).drawn.some((d) => d.states[1] === 'up'),
      undefined, { polling: 10, timeout: REFRESH_S * 1000 + 5000 })
    await b.close()
    await until('/status shows target b unhealthy', async () => (await targetState(proc.adminUrl, b.url)) === 'unhealthy', 10_000)
    const downAt = Date.now()

    // Wait for a refresh that started after that moment. Every refresh so far drew exactly what its own
    // answer said (a page one answer behind fails at the refresh where b went down), and the first answer
    // with b down was drawn by a refresh that started within one interval of /status saying so.
    await page.waitForFunction((t) => (window as unknown as { drawn: Array<{ fetchedAt: number }> }).drawn.some((d) => d.fetchedAt > t),
      downAt, { polling: 10, timeout: REFRESH_S * 1000 + 5000 })
    const drawn = await page.evaluate(() => (window as unknown as { drawn: Array<{ n: number; fetchedAt: number; states: Array<string | null> }> }).drawn)
    await until('every drawn answer was read', () => drawn.every((d) => answers[d.n - 1] !== undefined))
    const said = (d: { n: number }): string[] => [a.url, b.url].map((u) => answers[d.n - 1]!.upstreams.flatMap((x) => x.targets).find((t) => t.url === u)!.health.state)
    const SHOWN: Record<string, string> = { up: 'up', unhealthy: 'down' }
    for (const d of drawn) expect(d.states, `refresh ${d.n}`).toEqual(said(d).map((state) => SHOWN[state]))
    const firstDown = drawn.find((d) => said(d)[1] === 'unhealthy')
    expect(firstDown, 'no refresh fetched b down').toBeDefined()
    expect(firstDown!.states).toEqual(['up', 'down'])
    // One interval after the previous refresh's answer, plus that answer's time on a loaded machine.
    expect(firstDown!.fetchedAt).toBeLessThanOrEqual(downAt + REFRESH_S * 1000 + 2500)
    expect(drawn.filter((d) => d.fetchedAt > downAt).every((d) => d.states[1] === 'down')).toBe(true)
    expect(await page.textContent(`${targetRow(b.url)} td:nth-child(3)`)).toMatch(/^active: \d+ probe\(s\) failed in a row, last: /)
    expect(await page.evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument)).toBe(true)

    // Routes: totals as counted, a rate once two answers were seen; the breaker and the local limiter store.
    expect(await shown(page, '#routes tr[data-route="users"] td')).toEqual([
      'users', 'GET /api/users/*', 'users', expect.stringMatching(/^\d+(\.\d)?\/s$/), '0.0/s', '4', '0', 'closed'])
    expect(await shown(page, '#routes tr[data-route="billing"] td.num')).toEqual([expect.stringMatching(/\/s$/), expect.stringMatching(/\/s$/), '3', '1'])
    expect(await shown(page, '#breakers td')).toEqual(['users', 'closed', '4', '0', '0.0 %', '—'])
    // The client's bucket: held while it refills, dropped by the once-a-second sweep once full again.
    expect(await shown(page, '#limiters td')).toEqual(['cluster (none)', 'none', '0', '—', 'local', expect.stringMatching(/^[01] of at most 100000 keys$/), '', ''])

    // A rejected reload shows with its reason, and the page keeps the version in force.
    const header = `listen: ${proc.url.slice('http://'.length)}\nadmin: ${proc.adminUrl.slice('http://'.length)}\n`
    writeFileSync(proc.configPath, header + config.replace('upstream: billing', 'upstream: billing-v2'))
    await until('/status lists the rejected reload', async () => (await statusOf(proc.adminUrl)).config.rejected.length > 0, 10_000)
    await drawnAfter(page, Date.now())
    expect((await shown(page, '#rejected td')).join(' | ')).toMatch(/upstream "billing-v2" is not defined/)

    // Some traffic for the picture: rates drawn from two answers with requests between them.
    let sending = true
    const traffic = (async () => {
      while (sending) {
        await Promise.all([httpRequest(`${proc.url}/api/users/x`), httpRequest(`${proc.url}/api/billing/x`)])
        await new Promise((r) => setTimeout(r, 20))
      }
    })()
    await refreshAfter(page, await drawnAfter(page, Date.now()))
    sending = false
    await traffic

    const dir = mkdtempSync(join(tmpdir(), 'tollgate-shot-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const shot = process.env['STATUS_PAGE_SCREENSHOT'] ?? join(dir, 'status-page.png')
    await page.screenshot({ path: shot, fullPage: true })
    const png = readFileSync(shot)
    expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a')
    expect(png.readUInt32BE(16)).toBe(1200) // IHDR width: the viewport

    // Nothing but the page and /status was asked for, and nothing was refused or thrown (a CSP block logs an error).
    expect(new Set(requests.map((u) => new URL(u).pathname))).toEqual(new Set(['/', '/status']))
    expect(requests.every((u) => u.startsWith(proc.adminUrl + '/'))).toBe(true)
    expect(problems).toEqual([])
  })

  it('puts user-controlled text into the page as text, never as markup, and keeps the last answer when /status is gone', async () => {
    const up = await startUpstream({ statuses: [200] })
    const gw = await startGateway(`
upstreams:
  api: { targets: [{ url: ${up.url} }] }
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
`)
    const browser = await startBrowser()
    const { page, problems } = await browser.page()
    await page.goto(`${gw.adminUrl}/?refresh=${REFRESH_S}`)
    await drawnAfter(page, 0)
    const hostile = '<img src=x onerror="window.pwned=1">'
    expect(await gw.rewrite(`
upstreams:
  api: { targets: [{ url: ${up.url} }] }
routes:
  - { id: api, match: { path: /api/* }, upstream: '${hostile}' }
`)).toBe('rejected')
    await drawnAfter(page, Date.now())
    expect((await shown(page, '#rejected td')).join(' ')).toContain(`upstream "${hostile}" is not defined`)
    expect(await page.evaluate(() => document.querySelectorAll('img').length)).toBe(0)
    expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBeUndefined()
    expect(problems).toEqual([])

    // /status gone: the page says so and keeps the last answer on screen.
    await gw.close()
    await page.waitForSelector('#error:not([hidden])', { timeout: REFRESH_S * 1000 + 5000 })
    expect(await page.textContent('#error')).toMatch(/^\/status did not answer \(.+\); showing the last answer\.$/)
    expect((await shown(page, '#rejected td')).join(' ')).toContain(`upstream "${hostile}" is not defined`)
  })

  it('shows each JWT route\'s JWKS: ok with its keys, then failing with the error while the last good keys serve', async () => {
    const idpKey = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(idpKey.publicKey)), kid: 'k1' }] })
    let down = false
    const idp = http.createServer((req, res) => {
      if (down) req.socket.destroy()
      else res.writeHead(200, { 'content-type': 'application/json' }).end(jwks)
    })
    const { port } = await listenForTest(idp)
    const url = `http://127.0.0.1:${port}/jwks.json`
    const up = await startUpstream({ statuses: [200] })
    const gw = await startGateway(`
upstreams:
  api: { targets: [{ url: ${up.url} }] }
routes:
  - { id: api, match: { path: /api/* }, upstream: api, auth: { type: jwt, jwt: { jwks: "${url}", algorithms: [ES256] } } }
  - { id: open, match: { path: /open }, upstream: api }
`)
    const token = (kid: string): Promise<string> => new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid }).setSubject('a').sign(idpKey.privateKey)
    expect((await gw.get('/api/x', { authorization: `Bearer ${await token('k1')}` })).status).toBe(200)
    const browser = await startBrowser()
    const { page, problems } = await browser.page()
    await page.goto(`${gw.adminUrl}/?refresh=${REFRESH_S}`)
    await drawnAfter(page, 0)
    const cells = (): Promise<string[]> => shown(page, '#jwks tr[data-route="api"] td')
    expect(await cells()).toEqual(['api', url, 'ok', '1', expect.stringMatching(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/), '—'])
    expect(await shown(page, '#jwks tr')).toHaveLength(1) // the open route has no key set

    down = true
    expect((await gw.get('/api/x', { authorization: `Bearer ${await token('k9')}` })).status).toBe(401) // an unknown kid: a refresh, which fails
    await drawnAfter(page, Date.now())
    const failing = await cells()
    expect(failing.slice(0, 4)).toEqual(['api', url, 'failing', '1'])
    expect(failing[5]).toMatch(/^TypeError: fetch failed \(\d{4}-.+Z\)$/)
    expect((await gw.get('/api/x', { authorization: `Bearer ${await token('k1')}` })).status).toBe(200)
    expect(problems).toEqual([])
  })

  it('refreshes every 3 s unless ?refresh= says otherwise, and never more often than every 0.2 s', async () => {
    const up = await startUpstream({ statuses: [200] })
    const gw = await startGateway(`
upstreams:
  api: { targets: [{ url: ${up.url} }] }
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
`)
    const browser = await startBrowser()
    const { page } = await browser.page()
    const every = async (query: string): Promise<string | undefined> => {
      await page.goto(`${gw.adminUrl}/${query}`)
      await drawnAfter(page, 0)
      return /every (\S+) s$/.exec((await page.textContent('#updated')) ?? '')?.[1]
    }
    expect(await every('')).toBe('3')
    expect(await every('?refresh=0.01')).toBe('0.2')
    expect(await every('?refresh=10')).toBe('10')
    expect(await every('?refresh=nonsense')).toBe('3')
  })

  it('shows each route\'s request and 5xx rates between two refreshes, and zero without traffic', async () => {
    let n = 0
    const up = await startUpstream({ handler: (_req, res) => { res.writeHead(n++ % 2 === 0 ? 200 : 500); res.end() } })
    const gw = await startGateway(`
upstreams:
  api: { targets: [{ url: ${up.url} }], retry: { attempts: 0 } }
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
`)
    const browser = await startBrowser()
    const { page } = await browser.page()
    // 1 s apart: time for several requests between two refreshes on a loaded machine.
    await page.goto(`${gw.adminUrl}/?refresh=1`)
    const cells = (): Promise<string[]> => shown(page, '#routes tr[data-route="api"] td.num')
    await drawnAfter(page, 0)
    expect((await cells()).slice(2)).toEqual(['0', '0'])

    // Traffic all through the interval between two refreshes: both rates above zero, the 5xx one below the other.
    let sending = true
    let sent = 0
    const traffic = (async () => {
      while (sending) {
        await gw.get('/api/x')
        sent++
      }
    })()
    const during = await drawnAfter(page, Date.now())
    await refreshAfter(page, during)
    const [perSecond, errorsPerSecond] = await cells()
    sending = false
    await traffic
    expect(Number.parseFloat(perSecond!)).toBeGreaterThan(0)
    expect(Number.parseFloat(errorsPerSecond!)).toBeGreaterThan(0)
    expect(Number.parseFloat(errorsPerSecond!)).toBeLessThan(Number.parseFloat(perSecond!))

    // After the traffic: the totals as sent, then no rate once both answers came after it.
    const quiet = await drawnAfter(page, Date.now())
    expect((await cells()).slice(2)).toEqual([String(sent), String(Math.floor(sent / 2))])
    await refreshAfter(page, quiet)
    expect((await cells()).slice(0, 2)).toEqual(['0.0/s', '0.0/s'])
  })

  it('with --workers, shows the sum of the workers\' route counts and the primary\'s probe states', async () => {
    let n = 0
    const up = await startHealthUpstream('up')
    const flaky = await startUpstream({ handler: (_req, res) => { res.writeHead(n++ % 4 === 3 ? 502 : 200); res.end() } })
    const proc = await spawnGateway(`
upstreams:
  api:
    targets: [{ url: ${up.url} }]
    healthCheck: { active: { path: /healthz, interval: 100ms, timeout: 200ms, healthyThreshold: 1, unhealthyThreshold: 2 } }
  flaky: { targets: [{ url: ${flaky.url} }], retry: { attempts: 0 } }
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
  - { id: flaky, match: { path: /flaky/* }, upstream: flaky }
`, ['--workers', '2'])
    await until('the primary probed the target up', async () => (await targetState(proc.adminUrl, up.url)) === 'healthy', 10_000)
    // Each on a new connection: the cluster hands connections, not requests, to its workers.
    const agentless = (path: string): Promise<number> => httpRequest(proc.url + path, { headers: { connection: 'close' } }).then((r) => r.status)
    for (let i = 0; i < 6; i++) expect(await agentless('/api/x')).toBe(200)
    for (let i = 0; i < 8; i++) await agentless('/flaky/x')
    const routes = ((await httpRequest(proc.adminUrl + '/status')).json() as { routes: Array<{ id: string; requests: number; errors: number }> }).routes
    expect(routes.map((r) => [r.id, r.requests, r.errors])).toEqual([['api', 6, 0], ['flaky', 8, 2]])

    const browser = await startBrowser()
    const { page, problems } = await browser.page()
    await page.goto(`${proc.adminUrl}/?refresh=${REFRESH_S}`)
    await drawnAfter(page, 0)
    expect((await shown(page, '#routes tr[data-route="flaky"] td.num')).slice(2)).toEqual(['8', '2'])
    expect(await page.textContent(`#upstreams tr[data-target="${up.url}"] td.state`)).toBe('up')
    expect(await page.textContent(`#upstreams tr[data-target="${flaky.url}"] td.state`)).toBe('per worker')
    expect(await shown(page, '#limiters td')).toEqual(['cluster (none)', 'per worker', '—', '—', 'local', 'per worker', '', ''])
    expect((await shown(page, '#facts li')).join(' | ')).toMatch(/workers 2 of 2 ready, 0 restarts/)
    expect(problems).toEqual([])
  })
})
