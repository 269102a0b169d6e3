// An upstream that holds requests until told to answer, and says when a given number are being held.
import type { ServerResponse } from 'node:http'
import { startUpstream, type Upstream } from './upstream.js'

export interface HeldUpstream extends Upstream {
  /** Resolves once `n` requests are being held (at once or in all). */
  holding(n: number): Promise<void>
  /** Answers every held request, and any later one at once. */
  release(): void
}

export async function startHeldUpstream(body = 'held done'): Promise<HeldUpstream> {
  const held: ServerResponse[] = []
  const waiters: Array<{ n: number; resolve: () => void }> = []
  let total = 0
  let released = false
  const up = await startUpstream({
    handler: (_req, res) => {
      if (released) return void res.end(body)
      held.push(res)
      total++
      for (const w of waiters.filter((w) => total >= w.n)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve()
      }
    },
  })
  return Object.assign(up, {
    holding(n: number): Promise<void> {
      if (total >= n) return Promise.resolve()
      return new Promise<void>((resolve) => waiters.push({ n, resolve }))
    },
    release(): void {
      released = true
      for (const res of held.splice(0)) res.end(body)
    },
  })
}

/** The value of an unlabelled sample in Prometheus text, or undefined. */
export function sample(metricsText: string, name: string): number | undefined {
  const line = metricsText.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? undefined : Number(line.slice(name.length + 1))
}
