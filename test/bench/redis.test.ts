// The bench's own redis-server (bench/lib/redis.ts): started on a free port without persistence, answered
// without a client library, stopped by its pid. Skipped where redis-server is not installed.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { redisCommand, redisCommandCalls, redisInfo, redisMissing, startRedis } from '../../bench/lib/redis.js'

describe.skipIf(redisMissing() !== null)('startRedis', () => {
  it('starts a redis-server that answers PING and INFO, with no snapshots, and stops it', { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-bench-redis-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const redis = await startRedis(dir, null)
    onTestFinished(async () => { await redis.child.stop(2_000) })

    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`)
    expect(await redisCommand(redis.port, 'PING')).toBe('PONG')
    const stats = await redisInfo(redis.port, 'all')
    expect(stats.get('total_commands_processed')).toBeGreaterThan(0)
    expect(stats.get('aof_enabled')).toBe(0)
    await expect(redisCommand(redis.port, 'NOSUCHCOMMAND')).rejects.toThrow(/unknown command/)
    await redisCommand(redis.port, 'EVAL "return redis.call(\'PING\')" 0')
    const calls = await redisCommandCalls(redis.port)
    expect(calls.get('eval')).toBe(1)
    expect(calls.get('ping')).toBe(3) // startRedis's, ours, and the script's

    expect(await redis.child.stop(5_000)).toBe(0)
    await expect(redisCommand(redis.port, 'PING')).rejects.toThrow()
  })
})
