// README "Reload": the directory watch catches in-place writes, renames and symlink swaps, and "a stat poll
// every 2 s covers filesystems without inotify". The poll is shown on a change the directory watch cannot
// see: routes.yaml is a symlink to a file in another directory, and that file is written in place (the
// kernel reports the write to the watch on that other directory only).
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { watchConfigFile } from '../../src/lifecycle/file-watch.js'
import { startUpstream } from '../helpers/upstream.js'
import { startWatchedGateway } from '../helpers/watched-gateway.js'

/** conf/routes.yaml -> elsewhere/real.yaml, holding `text`. */
function symlinkedConfig(text: string): { link: string; target: string } {
  const root = mkdtempSync(join(tmpdir(), 'tollgate-watch-'))
  onTestFinished(() => rmSync(root, { recursive: true, force: true }))
  mkdirSync(join(root, 'conf'))
  mkdirSync(join(root, 'elsewhere'))
  const target = join(root, 'elsewhere', 'real.yaml')
  writeFileSync(target, text)
  const link = join(root, 'conf', 'routes.yaml')
  symlinkSync(target, link)
  return { link, target }
}

/**
 * Writes `text(i)` to `file`, then waits up to `waitMs` for `seen`; again, until `seen` or `tries` writes.
 * Returns the number of writes: 1 when the first write was seen.
 */
async function writeUntil(file: string, seen: Promise<unknown>, tries: number, waitMs: number, text = (i: number) => `# ${'x'.repeat(i)}\n`): Promise<number> {
  let isSeen = false
  void seen.then(() => { isSeen = true }, () => { isSeen = true })
  let i = 0
  while (!isSeen && i < tries) {
    writeFileSync(file, text(++i))
    await Promise.race([seen.catch(() => undefined), new Promise((r) => setTimeout(r, waitMs))])
  }
  return i
}

/** A promise of the watcher's first onChange, and the callback to give the watcher. */
function firstChange(): { changed: Promise<void>; onChange: () => void; count: () => number } {
  let n = 0
  let resolve!: () => void
  const changed = new Promise<void>((r) => { resolve = r })
  return { changed, onChange: () => { n++; resolve() }, count: () => n }
}

describe('watchConfigFile: the stat poll', () => {
  it('reports a change that only the stat poll can see, within a few poll periods', async () => {
    const { link, target } = symlinkedConfig('# v0\n')
    const change = firstChange()
    const watcher = watchConfigFile(link, change.onChange, 20, 100)
    onTestFinished(() => watcher.close())
    // 100ms poll + 20ms quiet: the first write is seen within its 1 s wait. The poll's baseline is the
    // file as it was when the watch started, so a change before its first tick counts too.
    const writes = await writeUntil(target, change.changed, 10, 1000)
    expect(change.count()).toBeGreaterThan(0)
    expect(writes).toBe(1)
  })

  it('does not see that change without the poll (the premise of the test above)', async () => {
    const { link, target } = symlinkedConfig('# v0\n')
    const change = firstChange()
    const watcher = watchConfigFile(link, change.onChange, 20, 3_600_000)
    onTestFinished(() => watcher.close())
    await writeUntil(target, change.changed, 4, 250)
    expect(change.count()).toBe(0)
  })
})

describe('hot reload through the stat poll', () => {
  it('applies a config that changed where the directory watch cannot see it', async () => {
    const up = await startUpstream({ body: 'new route' })
    const before = `listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nupstreams:\n  a: { targets: [{ url: ${up.url} }] }\nroutes:\n  - { id: old, match: { path: /old }, upstream: a }\n`
    const after = before.replace('{ id: old, match: { path: /old }', '{ id: new, match: { path: /new }')
    const { link, target } = symlinkedConfig(before)
    const gw = await startWatchedGateway(link, 100)
    expect((await gw.get('/new')).status).toBe(404)
    const applied = gw.nextReload((e) => e.result === 'applied')
    // 100ms poll + the gateway's 200ms quiet: each write gets 1.5 s to be applied.
    const writes = await writeUntil(target, applied, 6, 1500, () => after)
    await applied
    expect(writes).toBeLessThanOrEqual(3)
    expect((await gw.get('/new')).body).toBe('new route')
  })
})
