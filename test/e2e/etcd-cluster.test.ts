// A 3-member etcd cluster (README "Running several instances against etcd"): the leader, then a follower, then the last member restart
// while a stream of writes goes on; the gateway loses no change: its routes end equal to what etcd holds.
import type { Etcd3 } from 'etcd3'
import { describe, expect, it, onTestFinished } from 'vitest'
import { createEtcdClient, readPrefix } from '../../src/etcd/client.js'
import { nextEvent, startEtcdCluster, startEtcdGateway, type EtcdCluster, type EtcdMember } from '../helpers/etcd.js'
import { startUpstream } from '../helpers/upstream.js'

/** Writes until stopped; every write is retried until etcd acknowledges it. */
function writeStream(client: Etcd3, prefix: string): { stop(): Promise<number>; readonly written: number } {
  let running = true
  let written = 0
  const retry = async (op: () => Promise<unknown>): Promise<void> => {
    for (;;) {
      try {
        await op()
        return
      } catch {
        await new Promise((r) => setTimeout(r, 50))
      }
    }
  }
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const route = JSON.stringify({ match: { path: `/r${i % 40}/v${i}` }, upstream: 'u' })
      await retry(() => client.put(`${prefix}/routes/r${i % 40}`).value(route).exec())
      if (i % 7 === 6) await retry(() => client.delete().key(`${prefix}/routes/r${(i * 3) % 40}`).exec())
      written++
      await new Promise((r) => setTimeout(r, 5))
    }
  })()
  return {
    get written() { return written },
    async stop() {
      running = false
      await loop
      return written
    },
  }
}

async function restart(member: EtcdMember, cluster: EtcdCluster): Promise<void> {
  await member.kill()
  await member.restart()
  await cluster.leader() // a leader is elected again
}

describe('etcd cluster failover', () => {
  it('loses no change when the leader and then a follower restart under a stream of writes', async () => {
    const cluster = await startEtcdCluster(3)
    const writer = await createEtcdClient({ endpoints: cluster.endpoints }, { callTimeoutMs: 2_000 })
    onTestFinished(() => writer.close())
    const up = await startUpstream()
    const gw = await startEtcdGateway(`etcd: { endpoints: [${cluster.endpoints.map((e) => `"${e}"`).join(', ')}], prefix: /ha, snapshotFile: "$DIR/snapshot.json" }
upstreams: { u: { targets: [{ url: ${up.url} }] } }
`, { etcdTuning: { watchdogMs: 500, probeTimeoutMs: 500, callTimeoutMs: 1_000, retryCapMs: 300 } })

    const stream = writeStream(writer, '/ha')
    const progressed = async (n: number): Promise<void> => {
      while (stream.written < n) await new Promise((r) => setTimeout(r, 20))
    }
    await progressed(30)
    // The leader first, then a follower, then the last member: each member restarts once, so whichever
    // member the gateway's watch stream is on goes down at some point.
    const leader = await cluster.leader()
    await restart(leader, cluster)
    await progressed(stream.written + 30)
    const newLeader = await cluster.leader()
    const follower = cluster.members.find((m) => m !== leader && m !== newLeader)!
    await restart(follower, cluster)
    await progressed(stream.written + 20)
    await restart(cluster.members.find((m) => m !== leader && m !== follower)!, cluster)
    await progressed(stream.written + 20)
    const total = await stream.stop()

    const { revision, entries } = await readPrefix(writer, '/ha/')
    const expected = Object.fromEntries(entries.map((e) => [e.key.slice('/ha/routes/'.length), (JSON.parse(e.value) as { match: { path: string } }).match.path]))
    const inForce = (): Record<string, string> =>
      Object.fromEntries(gw.gateway.table.config.routes.map((r) => [r.id, r.match.path]))
    if (JSON.stringify(inForce()) !== JSON.stringify(expected) || gw.gateway.etcd!.revision < revision) {
      await nextEvent(gw.gateway.events, 'etcd', () => JSON.stringify(inForce()) === JSON.stringify(expected))
    }
    expect(total).toBeGreaterThan(90)
    expect(Object.keys(expected).length).toBeGreaterThan(10)
    expect(inForce()).toEqual(expected)
    // The gateway did lose its etcd member on the way (and said so).
    expect(gw.log.lines.some((l) => l.level >= 40 && l.msg.startsWith('etcd: '))).toBe(true)
    // Every route answers on its latest path.
    for (const [id, path] of Object.entries(expected).slice(0, 5)) expect((await gw.get(path)).status, id).toBe(200)
  }, 60_000)
})
