// Shutdown as one state machine (README "Deployment"), for the single process, each cluster worker and the primary:
//
//   serving ──begin()──> delaying ──shutdown.delay──> draining ──work done or timed out──> stopped
//
//   serving   /readyz 200; config changes apply.
//   delaying  /readyz 503 ('draining'); config sources closed; traffic still served, so load balancers see
//             the 503 and stop sending before the listener goes away.
//   draining  the listener is closed; requests in flight finish (busy connections get Connection: close);
//             config changes are refused from here on.
//   stopped   everything closed; begin() resolves.
//
// begin() is idempotent: a second call returns the same promise. What each step does is the owner's (the
// proxy's connections, or the primary's workers); the order and the states are this file's.

export type DrainState = 'serving' | 'delaying' | 'draining' | 'stopped'

export interface DrainSteps {
  /** serving -> delaying: stop following config sources. */
  delaying(): Promise<void>
  /** How long to keep serving with /readyz 503; read when begin() runs (the config may have changed). */
  delayMs(): number
  /** delaying -> draining: stop accepting; resolves when the work in flight ended or its time is up. */
  draining(): Promise<void>
  /** draining -> stopped: close what is left (admin listener, connection pools). */
  stopping(): Promise<void>
}

export class Drain {
  #state: DrainState = 'serving'
  #done: Promise<void> | null = null
  readonly #steps: DrainSteps
  /** Called on every transition (logs, tests). */
  onTransition: ((state: DrainState) => void) | null = null

  constructor(steps: DrainSteps) {
    this.#steps = steps
  }

  get state(): DrainState {
    return this.#state
  }

  /** README "Admin endpoints and metrics": /readyz is 503 from the first signal on. */
  notReadyReason(): string | null {
    return this.#state === 'serving' ? null : 'draining'
  }

  /** Config changes are taken while serving and delaying (the delay is still normal service). */
  get acceptsConfig(): boolean {
    return this.#state === 'serving' || this.#state === 'delaying'
  }

  /** Starts the shutdown once; resolves when stopped (also when a step failed: it rejects then). */
  begin(): Promise<void> {
    this.#done ??= this.#run()
    return this.#done
  }

  async #run(): Promise<void> {
    try {
      this.#enter('delaying')
      await this.#steps.delaying()
      const delayMs = this.#steps.delayMs()
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs))
      this.#enter('draining')
      await this.#steps.draining()
    } finally {
      try {
        await this.#steps.stopping()
      } finally {
        this.#enter('stopped')
      }
    }
  }

  #enter(state: DrainState): void {
    this.#state = state
    this.onTransition?.(state)
  }
}

/** true when `promise` settles before `deadline` (epoch ms), false when the deadline comes first. */
export async function settlesBefore(promise: Promise<unknown>, deadline: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<false>((resolve) => { timer = setTimeout(resolve, Math.max(0, deadline - Date.now()), false) })
  try {
    return await Promise.race([promise.then(() => true, () => true), expired])
  } finally {
    clearTimeout(timer)
  }
}
