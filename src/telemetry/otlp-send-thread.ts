// The OTLP exporter's worker thread (otlp-exporter.ts says why it has one): it takes serialized exports from
// the gateway's thread, sends each (otlp-sender.ts) and answers with its id and the error, null when the
// collector took it.
import { parentPort, workerData } from 'node:worker_threads'
import { OtlpSender } from './otlp-sender.js'

/** What the exporter starts the thread with. */
export interface SendThreadData {
  readonly endpoint: string
  readonly timeoutMs: number
}

/** One export to send, and the answer to it. */
export interface SendRequest {
  readonly id: number
  readonly body: Uint8Array
}
export interface SendAnswer {
  readonly id: number
  readonly error: string | null
}

const port = parentPort
if (port !== null) {
  const { endpoint, timeoutMs } = workerData as SendThreadData
  const sender = new OtlpSender(endpoint, timeoutMs)
  port.on('message', ({ id, body }: SendRequest) => {
    sender.send(body).then(
      () => port.postMessage({ id, error: null } satisfies SendAnswer),
      (error: unknown) => port.postMessage({ id, error: error instanceof Error ? error.message : String(error) } satisfies SendAnswer),
    )
  })
}
