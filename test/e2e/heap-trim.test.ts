// After a config load that left much garbage, the gateway runs one full collection (src/telemetry/heap-trim.ts):
// file reloads, and configs applied from etcd or the cluster primary (applyConfig).
import { describe, expect, it } from 'vitest'
import { LARGE_GROWTH_BYTES } from '../../src/telemetry/heap-trim.js'
import { startGateway } from '../helpers/gateway.js'
import { leaveOldGarbage, nextTurn } from '../helpers/heap.js'

const config = (path: string): string => `upstreams:
  up: { targets: [{ url: http://127.0.0.1:9 }] }
routes:
  - { id: r0, match: { path: ${path} }, upstream: up }
`

describe('the gateway after a config load', () => {
  it('collects the garbage a file reload leaves, once', async () => {
    const t = await startGateway(config('/a/*'))
    await nextTurn()
    const before = t.gateway.heapTrimmer.collections
    leaveOldGarbage(LARGE_GROWTH_BYTES + 16 * 2 ** 20)
    expect(await t.rewrite(config('/b/*'))).toBe('applied')
    await nextTurn()
    expect(t.gateway.heapTrimmer.collections).toBe(before + 1)
    expect((await t.get('/b/x')).status).toBe(502) // the new config serves (nothing listens on port 9)
  })

  it('collects after a config applied from etcd or the cluster primary', async () => {
    const t = await startGateway(config('/a/*'))
    await nextTurn()
    const before = t.gateway.heapTrimmer.collections
    leaveOldGarbage(LARGE_GROWTH_BYTES + 16 * 2 ** 20)
    expect(t.gateway.applyConfig({ ...t.gateway.table.config }, 'etcd', '7')).toBe('applied')
    await nextTurn()
    expect(t.gateway.heapTrimmer.collections).toBe(before + 1)
  })
})
