// The JWT step's verification cache: a token seen before is answered synchronously (Next.Continue from
// run(), no suspension), a new one suspends while jose verifies, and an entry is not trusted past the
// token's exp. StepContext is the small object the step reads; the token is made and checked by jose.
import { SignJWT } from 'jose'
import { describe, expect, it } from 'vitest'
import { Next, type StepContext } from '../../../src/http/request-step.js'
import { JwtAuthStep } from '../../../src/policy/auth/jwt-auth-step.js'

const SECRET = new TextEncoder().encode('a-secret-of-at-least-32-bytes-0123456789')
const none = { inc: (): void => {} }

function context(token: string, startMs: number): { ctx: StepContext; settled: Promise<string> } {
  let settle: (how: string) => void = () => undefined
  const settled = new Promise<string>((r) => { settle = r })
  const ctx = {
    req: { headers: { authorization: `Bearer ${token}` } },
    startMs,
    consumer: null,
    finished: false,
    resume: () => settle(`resumed ${ctx.consumer}`),
    refuse: (refusal: { message: string }) => settle(`refused: ${refusal.message}`),
  } as unknown as StepContext
  return { ctx, settled }
}

describe('JwtAuthStep', () => {
  it('suspends on a new token, then answers the same token synchronously from its cache until exp', async () => {
    const step = new JwtAuthStep({ keyHeader: 'authorization', queryParam: null, forwardConsumer: 'x-consumer' },
      { key: SECRET, algorithms: ['HS256'], leewayMs: 0 }, { missing: none, invalid: none, expired: none })
    const exp = Math.floor(Date.now() / 1000) + 60
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setExpirationTime(exp).sign(SECRET)
    const first = context(token, performance.now())
    expect(step.run(first.ctx)).toBe(Next.Suspend)
    expect(await first.settled).toBe('resumed alice')
    const again = context(token, performance.now())
    expect(step.run(again.ctx)).toBe(Next.Continue)
    expect(again.ctx.consumer).toBe('alice')
    // A request that starts after exp (the clock as performance.now() sees it) is not served from the cache.
    const late = context(token, performance.now() + (exp * 1000 - Date.now()) + 1)
    expect(step.run(late.ctx)).toBe(Next.Suspend)
    expect(step.cacheSize).toBe(0)
  })
})
