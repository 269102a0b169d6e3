// Reading the etcd snapshot file (src/etcd/snapshot.ts): snapshots written before the cluster id was kept
// still load, and a snapshot for another prefix or of the wrong shape is refused with the reason.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { readEtcdSnapshot } from '../../src/etcd/snapshot.js'

function file(content: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-snapfile-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'snapshot.json')
  writeFileSync(path, JSON.stringify(content))
  return path
}

const items = [{ key: '/p/routes/a', value: '{"match":{"path":"/a"},"upstream":"u"}', modRevision: 7 }]

describe('readEtcdSnapshot', () => {
  it('loads a snapshot with the cluster id, and one written before it was kept', () => {
    const withId = readEtcdSnapshot(file({ version: 1, prefix: '/p', revision: 9, clusterId: '1234567890', writtenAt: 'x', items }), '/p')
    expect(withId).toMatchObject({ kind: 'loaded', snapshot: { revision: 9, clusterId: '1234567890' } })
    const old = readEtcdSnapshot(file({ version: 1, prefix: '/p', revision: 9, writtenAt: 'x', items }), '/p')
    expect(old).toMatchObject({ kind: 'loaded', snapshot: { revision: 9, items } })
    expect(old.kind === 'loaded' ? old.snapshot.clusterId : 'none').toBeUndefined()
  })

  it('refuses a snapshot for another prefix, or with a cluster id that is not a string', () => {
    const path = file({ version: 1, prefix: '/other', revision: 9, clusterId: '1', writtenAt: 'x', items })
    expect(readEtcdSnapshot(path, '/p')).toEqual({ kind: 'unusable', reason: `${path} holds prefix /other, not /p` })
    const bad = file({ version: 1, prefix: '/p', revision: 9, clusterId: 12, writtenAt: 'x', items })
    expect(readEtcdSnapshot(bad, '/p')).toEqual({ kind: 'unusable', reason: `${bad} is not a Tollgate etcd snapshot (version 1)` })
  })
})
