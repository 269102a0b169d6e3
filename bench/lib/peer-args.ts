// Flags every peer script takes: --port P --upstream http://127.0.0.1:U
import { parseArgs } from 'node:util'

export interface PeerArgs {
  readonly port: number
  readonly upstream: string
}

export function parsePeerArgs(): PeerArgs {
  const { values } = parseArgs({ options: { port: { type: 'string' }, upstream: { type: 'string' } } })
  if (values.port === undefined || values.upstream === undefined) {
    throw new Error('usage: node <peer>.js --port P --upstream http://127.0.0.1:U')
  }
  return { port: Number(values.port), upstream: values.upstream }
}

/** Exit on SIGTERM after closing the server (the harness waits for the exit). */
export function exitOnSigterm(close: () => Promise<void>): void {
  process.once('SIGTERM', () => {
    close().then(() => process.exit(0), () => process.exit(1))
  })
}
