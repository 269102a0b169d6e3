// A real headless Chromium (Debian's `chromium`, which .ci/run installs) driven by playwright-core, which
// never downloads a browser of its own. The browser runs as a launchServer process so the test can stop it
// by its PID if closing it fails; it is closed when the test finishes.
import { existsSync } from 'node:fs'
import { onTestFinished } from 'vitest'
import { chromium, type Browser, type Page } from 'playwright-core'

export const CHROMIUM = '/usr/bin/chromium'

// As root and on a machine without internet: no sandbox, no GPU, and none of Chromium's own background
// connections (update checks, sync, field trials), which this network refuses.
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync']

export interface TestBrowser {
  readonly browser: Browser
  readonly pid: number
  /** A new page; everything it logs as an error, and every page error, is kept in `problems`. */
  page(options?: { width?: number; height?: number }): Promise<{ page: Page; problems: string[]; requests: string[] }>
}

export async function startBrowser(): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} missing: .ci/run installs Debian's chromium package (apt-get install -y chromium)`)
  const server = await chromium.launchServer({ executablePath: CHROMIUM, args: ARGS, headless: true })
  const child = server.process()
  const pid = child.pid!
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve()
    else child.once('exit', () => resolve())
  })
  onTestFinished(async () => {
    await Promise.race([server.close(), new Promise((r) => setTimeout(r, 5000).unref())])
    if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL')
    await exited
  })
  const browser = await chromium.connect(server.wsEndpoint())
  return {
    browser,
    pid,
    async page(options = {}) {
      const context = await browser.newContext({ viewport: { width: options.width ?? 1200, height: options.height ?? 900 } })
      const page = await context.newPage()
      const problems: string[] = []
      const requests: string[] = []
      page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`) })
      page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
      page.on('request', (r) => requests.push(r.url()))
      return { page, problems, requests }
    },
  }
}
