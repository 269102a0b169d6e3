// The OTLP receiver a tracing scenario runs beside its peers (Scenario.needsOtlpReceiver), pinned like the
// upstream: the gateway's span exports go to it while the scenario is measured.
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { benchScript } from './paths.js'
import { freePort, spawnChild, waitUntilReady, type Child } from './processes.js'

export interface OtlpSink {
  /** http://127.0.0.1:port/v1/traces */
  readonly endpoint: string
  readonly statsUrl: string
  readonly child: Child
}

export interface OtlpSinkStats {
  readonly exports: number
  readonly bytes: number
}

export async function startOtlpSink(dir: string, core: number | null): Promise<OtlpSink> {
  mkdirSync(dir, { recursive: true })
  const port = await freePort()
  const child = spawnChild('otlp-sink', process.execPath, [benchScript('otlp-sink.js'), '--port', String(port)], { core, logPath: join(dir, 'otlp-sink.log') })
  const statsUrl = `http://127.0.0.1:${port}/stats`
  const notReady = await waitUntilReady(statsUrl, 10_000, child)
  if (notReady !== null) {
    await child.stop()
    throw new Error(`OTLP receiver ${notReady}`)
  }
  return { endpoint: `http://127.0.0.1:${port}/v1/traces`, statsUrl, child }
}

export async function otlpSinkStats(sink: OtlpSink): Promise<OtlpSinkStats | null> {
  try {
    return await (await fetch(sink.statsUrl)).json() as OtlpSinkStats
  } catch {
    return null
  }
}
