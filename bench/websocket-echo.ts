// Scenario websocket-echo (issue 16 item 5): WebSocket message round trips through Tollgate, against the same
// echo upstream reached directly and through the thinnest Node upgrade forwarder (bench/peers/ws-upgrade-
// forwarder.ts), in the same run. Not part of the wrk harness (bench/run.ts): its load is messages on
// long-lived connections, not requests.
//
//   npm run build && node dist/bench/websocket-echo.js [--seconds 10] [--connections 50] [--size 64] [--repetitions 3] [--quick]
//
// Each repetition runs every target once, interleaved, so all see the same minutes of the machine; idle
// peers are frozen (SIGSTOP) while another is measured. The proxies run on core 1, the load generator (a
// separate process, bench/ws-load.ts) and the upstream on core 0, when taskset and two cores exist.
// Prints a markdown table of medians and the ratios tollgate ÷ direct and tollgate ÷ node-forwarder.
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { benchScript, tollgateCli } from './lib/paths.js'
import { choosePinning, clockTicksPerSecond, freePort, killAllChildren, readGroupCpuTicks, spawnChild, waitUntilReady, type Child } from './lib/processes.js'

const run = promisify(execFile)

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '10' }, connections: { type: 'string', default: '50' }, size: { type: 'string', default: '64' },
  repetitions: { type: 'string', default: '3' }, quick: { type: 'boolean', default: false }, 'no-pin': { type: 'boolean', default: false },
} })
const seconds = values.quick ? Math.min(2, Number(values.seconds)) : Number(values.seconds)
const repetitions = values.quick ? 1 : Number(values.repetitions)
const connections = Number(values.connections)
const size = Number(values.size)

interface Target { readonly name: string; readonly url: string; readonly child: Child | null }
interface LoadResult { messages: number; seconds: number; p50Us: number; p99Us: number; errors: number; cpuUsPerMessage: number | null }

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? 0 : s[Math.floor((s.length - 1) / 2)]!
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-ws-bench-'))
  const pin = choosePinning(!values['no-pin'])
  process.stderr.write(`websocket-echo: ${connections} connections, ${size}-byte binary messages, ${seconds} s x ${repetitions}; ${pin.note}\n`)
  const upstreamPort = await freePort()
  const upstream = spawnChild('ws-echo-upstream', process.execPath, [benchScript('ws-echo-upstream.js'), '--port', String(upstreamPort)], { core: pin.loadCore, logPath: join(dir, 'upstream.log') })
  const upstreamUrl = `http://127.0.0.1:${upstreamPort}`
  const targets: Target[] = [{ name: 'direct', url: `ws://127.0.0.1:${upstreamPort}/ws`, child: null }]
  try {
    const notReady = await waitUntilReady(upstreamUrl + '/', 10_000, upstream)
    if (notReady !== null) throw new Error(`upstream: ${notReady}`)

    const gwPort = await freePort()
    const adminPort = await freePort()
    const configPath = join(dir, 'routes.yaml')
    writeFileSync(configPath, `listen: 127.0.0.1:${gwPort}\nadmin: 127.0.0.1:${adminPort}\nlog: { level: warn, access: false }\n` +
      `upstreams:\n  echo: { targets: [{ url: ${upstreamUrl} }] }\n` +
      'routes:\n  - { id: ws, match: { path: /* }, upstream: echo, websocket: true }\n')
    const tollgate = spawnChild('tollgate', process.execPath, [tollgateCli, '--config', configPath], { core: pin.proxyCore, logPath: join(dir, 'tollgate.log') })
    const forwarderPort = await freePort()
    const forwarder = spawnChild('node-forwarder', process.execPath, [benchScript('peers/ws-upgrade-forwarder.js'), '--port', String(forwarderPort), '--upstream', upstreamUrl],
      { core: pin.proxyCore, logPath: join(dir, 'forwarder.log') })
    targets.push({ name: 'tollgate', url: `ws://127.0.0.1:${gwPort}/ws`, child: tollgate })
    targets.push({ name: 'node-forwarder', url: `ws://127.0.0.1:${forwarderPort}/ws`, child: forwarder })
    for (const t of targets.slice(1)) {
      const r = await waitUntilReady(t.url.replace('ws://', 'http://'), 15_000, t.child)
      if (r !== null) throw new Error(`${t.name}: ${r}`)
    }

    const results = new Map<string, LoadResult[]>(targets.map((t) => [t.name, []]))
    for (let rep = 0; rep < repetitions; rep++) {
      for (const t of targets) {
        for (const other of targets) other.child?.setFrozen(other !== t)
        const args = [benchScript('ws-load.js'), '--url', t.url, '--connections', String(connections), '--seconds', String(seconds), '--size', String(size)]
        const command = pin.loadCore === null ? process.execPath : 'taskset'
        const argv = pin.loadCore === null ? args : ['-c', String(pin.loadCore), process.execPath, ...args]
        // The proxy's CPU per message (both directions of a round trip): steadier than messages/s on a busy machine.
        const ticksBefore = t.child === null ? null : readGroupCpuTicks(t.child.pid)
        const { stdout } = await run(command, argv, { timeout: (seconds + 30) * 1000 })
        const ticksAfter = t.child === null ? null : readGroupCpuTicks(t.child.pid)
        const result = JSON.parse(stdout.trim().split('\n').pop()!) as LoadResult
        result.cpuUsPerMessage = ticksBefore === null || ticksAfter === null || result.messages === 0 ? null
          : (ticksAfter - ticksBefore) / clockTicksPerSecond() * 1e6 / result.messages
        results.get(t.name)!.push(result)
        const cpu = result.cpuUsPerMessage === null ? '' : `, proxy CPU ${result.cpuUsPerMessage.toFixed(1)} us/message`
        process.stderr.write(`  ${t.name} rep ${rep + 1}: ${Math.round(result.messages / result.seconds)} msg/s, p99 ${Math.round(result.p99Us)} us${cpu}, errors ${result.errors}\n`)
      }
    }
    for (const t of targets) t.child?.setFrozen(false)

    const rate = (name: string): number => median(results.get(name)!.map((r) => r.messages / r.seconds))
    const p99 = (name: string): number => median(results.get(name)!.map((r) => r.p99Us))
    const cpu = (name: string): number | null => {
      const xs = results.get(name)!.map((r) => r.cpuUsPerMessage).filter((x): x is number => x !== null)
      return xs.length === 0 ? null : median(xs)
    }
    const lines = [
      `### websocket-echo: ${connections} connections, closed loop of ${size}-byte binary messages (median of ${repetitions} x ${seconds} s)`,
      '',
      '| target | messages/s | p50 µs | p99 µs | proxy CPU µs/message | errors |',
      '|---|---:|---:|---:|---:|---:|',
      ...targets.map((t) => {
        const rs = results.get(t.name)!
        return `| ${t.name} | ${Math.round(rate(t.name))} | ${Math.round(median(rs.map((r) => r.p50Us)))} | ${Math.round(p99(t.name))} | ${cpu(t.name)?.toFixed(1) ?? '–'} | ${rs.reduce((n, r) => n + r.errors, 0)} |`
      }),
      '',
      `tollgate ÷ direct: messages/s ${(rate('tollgate') / rate('direct')).toFixed(2)}, p99 ${(p99('tollgate') / p99('direct')).toFixed(2)}`,
      `tollgate ÷ node-forwarder: messages/s ${(rate('tollgate') / rate('node-forwarder')).toFixed(2)}, p99 ${(p99('tollgate') / p99('node-forwarder')).toFixed(2)}, ` +
        `CPU per message ${((cpu('tollgate') ?? NaN) / (cpu('node-forwarder') ?? NaN)).toFixed(2)}`,
    ]
    console.log(lines.join('\n'))
  } finally {
    for (const t of targets) await t.child?.stop(5000)
    await upstream.stop(5000)
  }
}

main().catch((err: unknown) => {
  killAllChildren()
  console.error(err instanceof Error ? err.message : String(err))
  process.exit(1)
})
