// tollgate register --upstream U --url URL [--ttl 10s] [--id ID] [--weight N]   (README.md "Command line")
//
// Puts `<prefix>/services/U/ID` = {"url","weight"} under a lease of `ttl` and keeps the lease alive, so
// gateways route to this instance while it lives. A lost lease (etcd expired it while we could not reach
// it, or someone revoked it) is granted again and the key written again, with jittered back-off. SIGTERM
// or SIGINT revokes the lease, which deletes the key at once (gateways drop the target on that event),
// and exits 0; a second signal exits at once.
import { parseArgs } from 'node:util'
import type { Lease } from 'etcd3'
import { createEtcdClient, describeEtcdError } from '../client.js'
import { itemKey, parseItem } from '../keys.js'
import { parseDurationMs } from '../../config/units.js'
import { createLogger } from '../../telemetry/log.js'
import type { CommandIo } from './etcd-command.js'
import { ETCD_FLAG_OPTIONS, resolveEtcdTarget, type EtcdTarget } from './etcd-connection.js'
import { equalJitterMs } from '../../lib/backoff.js'

export const REGISTER_USAGE = `usage:
  tollgate register --upstream U --url http://host:port [--ttl 10s] [--id ID] [--weight N]
    [--endpoints http://host:2379[,...]] [--prefix /tollgate] [--config routes.yaml] [--username U --password P]
  Registers this instance as a target of upstream U under an etcd lease until SIGTERM/SIGINT.`

const UPSTREAM_NAME = /^[A-Za-z0-9_.-]+$/

export async function runRegister(args: readonly string[], io: CommandIo): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: [...args],
      options: {
        ...ETCD_FLAG_OPTIONS,
        upstream: { type: 'string' }, url: { type: 'string' }, ttl: { type: 'string' }, id: { type: 'string' }, weight: { type: 'string' },
      },
      strict: true,
    })
  } catch (err) {
    return usage(io, (err as Error).message)
  }
  const { upstream, url } = parsed.values
  if (upstream === undefined || url === undefined) return usage(io, '--upstream and --url are required')
  if (!UPSTREAM_NAME.test(upstream)) return usage(io, `--upstream ${JSON.stringify(upstream)}: must match ${UPSTREAM_NAME.source}`)
  const weight = parsed.values.weight === undefined ? 1 : Number(parsed.values.weight)
  let ttlMs: number
  try {
    ttlMs = parseDurationMs(parsed.values.ttl ?? '10s')
  } catch (err) {
    return usage(io, `--ttl: ${(err as Error).message}`)
  }
  const ttlSeconds = Math.max(1, Math.ceil(ttlMs / 1000))
  const value = JSON.stringify({ url, weight })
  let instance = parsed.values.id
  if (instance === undefined) {
    try {
      const u = new URL(url)
      instance = u.port === '' ? u.hostname : `${u.hostname}:${u.port}`
    } catch {
      instance = ''
    }
  }
  if (instance === '' || instance.includes('/')) return usage(io, `--id ${JSON.stringify(instance)}: must be non-empty and without "/"`)
  const checked = parseItem({ kind: 'service', upstream, instance }, value)
  if (!('parsed' in checked)) return usage(io, checked.reason)
  let target: EtcdTarget
  try {
    target = resolveEtcdTarget(parsed.values, io.env)
  } catch (err) {
    return usage(io, (err as Error).message)
  }
  const key = itemKey(target.prefix, { kind: 'service', upstream, instance })
  const log = createLogger(io.env, 2)
  let client
  try {
    client = await createEtcdClient(target.connection)
  } catch (err) {
    io.stderr(`tollgate register: ${(err as Error).message}\n`)
    return 1
  }

  let stopping = false
  let stop!: () => void
  const stopped = new Promise<null>((resolve) => { stop = () => resolve(null) })
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now')
      process.exit(1)
    }
    stopping = true
    log.info({ signal, key }, 'deregistering')
    stop()
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)

  let lease: Lease | null = null
  let failures = 0
  let lastWarnMs = -Infinity
  try {
    while (!stopping) {
      const current = client.lease(ttlSeconds, { autoKeepAlive: true })
      lease = current
      const lost = new Promise<Error>((resolve) => current.once('lost', resolve))
      try {
        await Promise.race([current.put(key).value(value).exec(), lost.then((err) => { throw err })])
        const leaseId = await current.grant()
        failures = 0
        log.info({ key, url, weight, lease: leaseId, ttlSeconds }, 'registered')
        const ended = await Promise.race([lost, stopped])
        if (ended === null) break
        log.warn({ key, reason: describeEtcdError(ended) }, 'lease lost; registering again')
      } catch (err) {
        current.release()
        failures++
        // At most one warning per 10 s while etcd is unreachable.
        if (Date.now() - lastWarnMs >= 10_000) {
          lastWarnMs = Date.now()
          log.warn({ key, failures, reason: describeEtcdError(err) }, 'cannot register; retrying')
        }
      }
      if (stopping) break
      await Promise.race([new Promise((r) => setTimeout(r, failures === 0 ? 0 : equalJitterMs(failures, 250, 5_000))), stopped])
    }
    if (lease !== null) {
      try {
        await lease.revoke({ deadline: Date.now() + 3_000 })
        log.info({ key }, 'deregistered: lease revoked')
      } catch (err) {
        // The key goes when the lease expires (at most ttl).
        log.warn({ key, reason: describeEtcdError(err) }, `could not revoke the lease; the key expires within ${ttlSeconds} s`)
      }
    }
    return 0
  } finally {
    client.close()
    process.off('SIGTERM', onSignal)
    process.off('SIGINT', onSignal)
  }
}

function usage(io: CommandIo, message: string): number {
  io.stderr(`tollgate register: ${message}\n${REGISTER_USAGE}\n`)
  return 2
}
