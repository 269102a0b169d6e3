// A paced keep-alive load loop for the reload tests (file and etcd): one connection, `perSecond` GETs,
// bounded by `maxRequests` and by `running()`, counting statuses per route and errors by code.
import { Pool } from 'undici'

export interface LoadStats {
  sent: number
  byRoute: Map<string, Map<number, number>>
  errors: Map<string, number>
}

export function newLoadStats(): LoadStats {
  return { sent: 0, byRoute: new Map(), errors: new Map() }
}

function count<K>(map: Map<K, number>, key: K): void {
  map.set(key, (map.get(key) ?? 0) + 1)
}

export async function loadLoop(url: string, perSecond: number, paths: () => Array<{ route: string; path: string }>,
  running: () => boolean, stats: LoadStats, maxRequests: number): Promise<void> {
  const client = new Pool(url, { connections: 1, pipelining: 1, keepAliveTimeout: 30_000 })
  const startMs = performance.now()
  try {
    for (let i = 0; i < maxRequests && running(); i++) {
      const list = paths()
      const { route, path } = list[i % list.length]!
      stats.sent++
      try {
        const r = await client.request({ path, method: 'GET' })
        await r.body.dump()
        let statuses = stats.byRoute.get(route)
        if (statuses === undefined) stats.byRoute.set(route, statuses = new Map())
        count(statuses, r.statusCode)
      } catch (err) {
        count(stats.errors, `${route}: ${(err as { code?: string }).code ?? (err as Error).message}`)
      }
      const aheadMs = startMs + ((i + 1) * 1000) / perSecond - performance.now()
      if (aheadMs > 1) await new Promise((r) => setTimeout(r, aheadMs))
    }
  } finally {
    await client.close()
  }
}
