// A route's access list and key auth, per call, on the real classes (src/policy/access/, src/policy/auth/):
// AccessStep.admits on a mix of client addresses, beside node:net's BlockList on the same lists (the
// library the own parser was measured against), and KeyAuthStep.consumerOf (the SHA-256 of a key and the
// lookup), and ConsumerStep.run (auth.allow and the per-consumer counter). Run by micro-bench.ts in its own process, timed by batches.ts with the other operations.
//
// JWT auth (issue 17 item 6): JwtAuthStep.run on a token already in its verification cache (what a client
// repeating its token costs), beside what a miss costs: jose's jwtVerify of the same RS256 token (async:
// timed by measureJwtVerify in batches of 10k awaited calls, not by batches.ts) and node:crypto's bare
// RSA-SHA256 signature check, the floor of any RS256 verification.
import { createPublicKey, verify } from 'node:crypto'
import { BlockList, isIPv6 } from 'node:net'
import { jwtVerify } from 'jose'
import { JwtAuthStep } from '../../src/policy/auth/jwt-auth-step.js'
import { Next, type StepContext } from '../../src/http/request-step.js'
import { benchJwt } from '../lib/bench-jwt.js'
import type { NsPerCall } from './micro-report.js'
import { AccessStep } from '../../src/policy/access/access-step.js'
import { KeyAuthStep } from '../../src/policy/auth/key-auth-step.js'
import { ConsumerStep } from '../../src/policy/auth/consumer-step.js'
import { operation, type Operation } from './batches.js'
import { CALL_KEYS } from './micro-report.js'

const ALLOW = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '2001:db8::/32']
const DENY = ['10.9.0.0/16', '2001:db8:bad::/48']
/** Admitted, refused by allow, refused by deny, IPv6, IPv4-mapped: 1024 addresses cycling through the kinds. */
const ADDRESSES = Array.from({ length: 1024 }, (_, i) => {
  switch (i % 5) {
    case 0: return `10.${i & 7}.${(i >> 3) & 255}.${i & 255}`
    case 1: return `8.8.${(i >> 3) & 255}.${i & 255}`
    case 2: return `10.9.${(i >> 3) & 255}.${i & 255}`
    case 3: return `2001:db8:${(i & 0xfff).toString(16)}::${(i & 0xff).toString(16)}`
    default: return `::ffff:192.168.${(i >> 3) & 255}.${i & 255}`
  }
})
const KEY = 'bench-key-0123456789abcdef' // 26 bytes, like scenario key-auth's
const KEY_HASH = 'sha256:05e0ac5de7c9e8a2d1a03c0ff1dd4d2fc6d3ae8b1c7d1f6f0d0f0e4fd3e0f3b1' // not KEY's: consumerOf misses, as an invalid key

function blockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList()
  for (const cidr of cidrs) {
    const [address = '', bits = ''] = cidr.split('/')
    list.addSubnet(address, Number(bits), isIPv6(address) ? 'ipv6' : 'ipv4')
  }
  return list
}

export function accessAuthOperations(): Operation[] {
  const none = { inc: (): void => {} }
  const step = new AccessStep(ALLOW, DENY, none)
  const allow = blockList(ALLOW)
  const deny = blockList(DENY)
  const auth = new KeyAuthStep({ keyHeader: 'x-api-key', queryParam: null, forwardConsumer: 'x-consumer' },
    { acme: { keyHash: KEY_HASH } }, { missing: none, invalid: none })
  const names = ['acme', 'globex', 'initech']
  const cells = new Map(names.map((n) => [n, { value: 0, inc(): void { this.value++ } }]))
  const consumers = new ConsumerStep({ names, forbidden: none }, cells)
  const consumerCtx = { consumer: 'globex', refuse: () => { throw new Error('globex is allowed') } } as unknown as StepContext
  return [
    operation(CALL_KEYS.accessAdmits, 'AccessStep.admits, 4 allow + 2 deny CIDRs, IPv4/IPv6/mapped mix', (i) => (step.admits(ADDRESSES[i & 1023]!) ? 1 : 0), true),
    operation(CALL_KEYS.accessBlockList, 'node:net BlockList.check, the same lists and addresses (peer)', (i) => {
      const ip = ADDRESSES[i & 1023]!
      const family = ip.indexOf(':') >= 0 ? 'ipv6' : 'ipv4'
      return !deny.check(ip, family) && allow.check(ip, family) ? 1 : 0
    }, true),
    operation(CALL_KEYS.keyAuthLookup, 'KeyAuthStep.consumerOf, a 26-byte key: SHA-256 + lookup', () => (auth.consumerOf(KEY) === null ? 1 : 0), true),
    operation(CALL_KEYS.consumerStep, 'ConsumerStep.run, auth.allow of 3 + the consumer counter (after key auth)', () => (consumers.run(consumerCtx) === Next.Continue ? 1 : 0), true),
  ]
}

const OPS_PER_BATCH = 10_000
const JWT_OPTIONS = { issuer: 'https://idp.bench/', audience: 'bench', algorithms: ['RS256'] }

/** JwtAuthStep.run on a cached RS256 token (the first run verifies it, awaited here, before timing). */
export async function jwtAuthOperations(): Promise<Operation[]> {
  const none = { inc: (): void => {} }
  const { publicKeyPem, token } = benchJwt()
  const step = new JwtAuthStep({ keyHeader: 'authorization', queryParam: null, forwardConsumer: 'x-consumer' },
    { key: createPublicKey(publicKeyPem), ...JWT_OPTIONS, leewayMs: 0 }, { missing: none, invalid: none, expired: none })
  let resumed: () => void = () => undefined
  const ctx = {
    req: { headers: { authorization: `Bearer ${token}` } },
    startMs: performance.now(),
    consumer: null as string | null,
    finished: false,
    resume: () => resumed(),
    refuse: () => { throw new Error('the bench token was refused') },
  } as unknown as StepContext
  await new Promise<void>((resolve) => {
    resumed = resolve
    if (step.run(ctx) !== Next.Suspend) throw new Error('the first run should verify')
  })
  return [
    operation(CALL_KEYS.jwtCachedHit, 'JwtAuthStep.run, an RS256 token in the verification cache', () => (step.run(ctx) === Next.Continue ? 1 : 0), true),
  ]
}

/** The cost of a cache miss: jose's jwtVerify and the bare signature check, `batches` of 10k calls each. */
export async function measureJwtVerify(batches: number): Promise<NsPerCall[]> {
  const { publicKeyPem, token } = benchJwt()
  const key = createPublicKey(publicKeyPem)
  const dot = token.lastIndexOf('.')
  const input = Buffer.from(token.slice(0, dot))
  const signature = Buffer.from(token.slice(dot + 1), 'base64url')
  const joseRuns: number[] = []
  const rawRuns: number[] = []
  const joseCpu: number[] = []
  const rawCpu: number[] = []
  for (let b = 0; b < batches + 1; b++) { // the first batch of each warms up and is dropped
    let cpu = process.cpuUsage()
    let start = process.hrtime.bigint()
    for (let i = 0; i < OPS_PER_BATCH; i++) await jwtVerify(token, key, JWT_OPTIONS)
    const joseNs = Number(process.hrtime.bigint() - start) / OPS_PER_BATCH
    const joseCpuNs = cpuNs(process.cpuUsage(cpu))
    cpu = process.cpuUsage()
    start = process.hrtime.bigint()
    let ok = 0
    for (let i = 0; i < OPS_PER_BATCH; i++) ok += verify('sha256', input, key, signature) ? 1 : 0
    if (ok !== OPS_PER_BATCH) throw new Error('the bench token does not verify')
    if (b === 0) continue
    joseRuns.push(joseNs)
    joseCpu.push(joseCpuNs)
    rawRuns.push(Number(process.hrtime.bigint() - start) / OPS_PER_BATCH)
    rawCpu.push(cpuNs(process.cpuUsage(cpu)))
  }
  return [
    summary(CALL_KEYS.jwtVerifyUncached, 'jose jwtVerify, RS256 2048-bit, iss + aud + exp (a cache miss)', joseRuns, joseCpu),
    summary(CALL_KEYS.rs256VerifyRaw, 'node:crypto verify, the same RS256 signature alone (peer)', rawRuns, rawCpu),
  ]
}

function cpuNs(used: NodeJS.CpuUsage): number {
  return ((used.user + used.system) * 1000) / OPS_PER_BATCH
}

function summary(key: string, label: string, wall: number[], cpu: number[]): NsPerCall {
  const mid = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!
  return { key, label, wallNs: mid(wall), minWallNs: Math.min(...wall), maxWallNs: Math.max(...wall), cpuNs: mid(cpu), batches: wall.length }
}
