// Child processes of the bench: spawn (optionally pinned to a core), wait until they answer, sample their
// memory, stop them. Every child is tracked so that a crash or Ctrl-C of the harness stops them all.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { accessSync, constants, closeSync, openSync, readdirSync, readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { delimiter, join } from 'node:path'
import { createServer, request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { AddressInfo } from 'node:net'

const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin']

/** Full path of an executable on PATH (or in an sbin directory, which a non-root PATH lacks), or null. */
export function findBinary(name: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), ...SBIN_DIRS]
  for (const dir of dirs) {
    if (dir === '') continue
    const candidate = join(dir, name)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // not here
    }
  }
  return null
}

/** Cores used when pinning: the proxy under test on one, load generator and upstream on the other. */
export interface Pinning {
  readonly proxyCore: number | null
  readonly loadCore: number | null
  readonly note: string
}

export function choosePinning(isWanted: boolean): Pinning {
  const cores = availableParallelism()
  if (!isWanted) return { proxyCore: null, loadCore: null, note: 'not pinned (--no-pin)' }
  if (findBinary('taskset') === null) return { proxyCore: null, loadCore: null, note: 'not pinned (taskset not found)' }
  if (cores < 2) return { proxyCore: null, loadCore: null, note: 'not pinned (1 core)' }
  return { proxyCore: 1, loadCore: 0, note: 'proxy under test on core 1; load generator, upstream and harness on core 0' }
}

export interface Child {
  readonly name: string
  readonly pid: number
  readonly logPath: string
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>
  readonly hasExited: () => boolean
  /** SIGTERM, then SIGKILL after graceMs; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>
  /**
   * Freeze (SIGSTOP) or thaw (SIGCONT) the child's whole process group. An idle peer left running shares
   * the proxy core with the peer under test: its timers, idle-time garbage collections and runtime threads
   * (V8's, Go's) take slices of that core and land in the measured peer's tail latency.
   */
  setFrozen(isFrozen: boolean): void
}

const running = new Set<ChildProcess>()

/** Kill every child still running (harness crash or interrupt). */
export function killAllChildren(): void {
  for (const child of running) signalGroup(child, 'SIGKILL')
  running.clear()
}

/** Each child leads its own process group (spawned detached), so a signal reaches its workers too. */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    child.kill(signal) // the group is gone already, or never formed
  }
}

export interface SpawnOptions {
  /** A core, or a taskset list of cores ("1-2"), or null: not pinned. */
  readonly core: number | string | null
  readonly logPath: string
  readonly env?: NodeJS.ProcessEnv
}

/** Start `command args` with stdout and stderr appended to logPath, under `taskset -c core` when given. */
export function spawnChild(name: string, command: string, args: readonly string[], options: SpawnOptions): Child {
  const fd = openSync(options.logPath, 'a')
  // taskset execs the command, so the pid we get is the command's own.
  const [file, argv] = options.core === null ? [command, [...args]] : ['taskset', ['-c', String(options.core), command, ...args]]
  // detached: its own process group, so setFrozen() and killAllChildren() reach nginx's and haproxy's workers.
  const child = spawn(file, argv, { stdio: ['ignore', fd, fd], env: options.env ?? process.env, detached: true })
  closeSync(fd)
  if (child.pid === undefined) throw new Error(`${name}: could not start ${command}`)
  running.add(child)
  let exitCode: number | null = null
  let isExited = false
  let isFrozen = false
  const setFrozen = (frozen: boolean): void => {
    if (isExited || frozen === isFrozen) return
    isFrozen = frozen
    signalGroup(child, frozen ? 'SIGSTOP' : 'SIGCONT')
  }
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      isExited = true
      exitCode = code
      running.delete(child)
      resolve(code)
    })
    child.once('error', () => {
      isExited = true
      running.delete(child)
      resolve(null)
    })
  })
  return {
    name,
    pid: child.pid,
    logPath: options.logPath,
    exited,
    hasExited: () => isExited,
    setFrozen,
    async stop(graceMs = 10_000) {
      if (isExited) return exitCode
      setFrozen(false) // a frozen process would leave SIGTERM pending
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
      const code = await exited
      clearTimeout(timer)
      return code
    },
  }
}

/** The last lines of a child's log, for error messages. */
export function tailOf(path: string, lines = 5): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join(' | ')
  } catch {
    return ''
  }
}

/** Resident set size of a process in KiB (Linux /proc), or null. */
export function readRssKib(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match === null ? null : Number(match[1])
  } catch {
    return null
  }
}

/** RSS of the process group `pgid` (a peer with its workers: nginx's, a gateway's --workers), or null. */
export function readGroupRssKib(pgid: number): number | null {
  let kib: number | null = null
  for (const pid of groupPids(pgid)) {
    const rss = readRssKib(Number(pid))
    if (rss !== null) kib = (kib ?? 0) + rss
  }
  return kib
}

/** The live processes of group `pgid` with their /proc stat, from /proc (none when it is not there). */
function* groupStats(pgid: number): Generator<{ readonly pid: string, readonly ticks: number }> {
  let pids: string[]
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name))
  } catch {
    return
  }
  for (const pid of pids) {
    const stat = readStat(pid)
    if (stat !== null && stat.pgrp === pgid) yield { pid, ticks: stat.ticks }
  }
}

function* groupPids(pgid: number): Generator<string> {
  for (const { pid } of groupStats(pgid)) yield pid
}

/** Fields of /proc/<pid>/stat counted from 1 as in proc(5); the name (field 2) may hold spaces and parentheses. */
const STAT_PGRP = 5
const STAT_UTIME = 14
const STAT_STIME = 15

/** utime + stime and the process group of one process, in clock ticks; null when it is gone (or a zombie). */
function readStat(pid: string): { readonly pgrp: number, readonly ticks: number } | null {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return null
  }
  // After ") " comes field 3, so field n is at index n - 3.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // An orphan that exited stays a zombie until reaped, which a container's init may never do.
  if (fields[0] === 'Z') return null
  return { pgrp: Number(fields[STAT_PGRP - 3]), ticks: Number(fields[STAT_UTIME - 3]) + Number(fields[STAT_STIME - 3]) }
}

/**
 * CPU time (user + system, every thread) of the process group `pgid` in clock ticks, from /proc: a child of
 * spawnChild leads its own group, so this counts nginx's worker as well as its master, and a gateway's
 * --workers. Null when the group has no process left or /proc is not there.
 */
export function readGroupCpuTicks(pgid: number): number | null {
  let ticks: number | null = null
  for (const stat of groupStats(pgid)) ticks = (ticks ?? 0) + stat.ticks
  return ticks
}

let ticksPerSecond: number | null = null

/** USER_HZ, the unit of /proc/<pid>/stat times: `getconf CLK_TCK`, 100 on every common Linux. */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === null) {
    const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })
    const value = Number(out.stdout?.trim())
    ticksPerSecond = Number.isInteger(value) && value > 0 ? value : 100
  }
  return ticksPerSecond
}

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  // The kernel may give a port it just released again at once: a peer once got one port for its listener
  // and its admin (bench smoke in CI: "admin 127.0.0.1:42253 overlaps the proxy listener"). A port handed out
  // before in this process is skipped; the range has some 28,000, a bench run uses a few hundred.
  for (let tries = 0; ; tries++) {
    const port = await portTheKernelGives()
    if (!handedOut.has(port) || tries >= 100) {
      handedOut.add(port)
      return port
    }
  }
}

/** Every port freePort() returned in this process. */
const handedOut = new Set<number>()

async function portTheKernelGives(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

export interface ProbeResult {
  readonly status: number
  readonly bytes: number
  /** Tollgate's x-tollgate-error header (the code of a response the gateway made itself), else null. */
  readonly tollgateError: string | null
}

/** One request on a fresh connection (no keep-alive left behind). */
export function probe(url: string, method = 'GET', body: Buffer | null = null, extraHeaders: Readonly<Record<string, string>> = {}): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...extraHeaders, connection: 'close' }
    if (body !== null) headers['content-length'] = String(body.length)
    // https://: the TLS scenarios' peers, with the bench's self-signed certificate (bench/lib/certs.ts).
    const send = url.startsWith('https:') ? httpsRequest : httpRequest
    const req = send(url, { method, agent: false, headers, timeout: 2000, rejectUnauthorized: false }, (res) => {
      let bytes = 0
      res.on('data', (chunk: Buffer) => { bytes += chunk.length })
      const code = res.headers['x-tollgate-error']
      const tollgateError = typeof code === 'string' ? code : null
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, tollgateError }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no response from ${url} within 2 s`)))
    req.on('error', reject)
    req.end(body ?? undefined)
  })
}

/**
 * Poll url until it answers 200, for at most timeoutMs. Fails early when the child exits.
 * Returns null when ready, or the reason it is not.
 */
export async function waitUntilReady(url: string, timeoutMs: number, child: Child | null): Promise<string | null> {
  const deadline = Date.now() + timeoutMs
  let last = 'no answer'
  while (Date.now() < deadline) {
    if (child?.hasExited() === true) return `exited before it was ready (${tailOf(child.logPath) || 'no output'})`
    try {
      const { status } = await probe(url)
      if (status === 200) return null
      last = `GET ${new URL(url).pathname} answered ${status}`
    } catch (error) {
      last = error instanceof Error ? error.message : String(error)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return `not ready within ${timeoutMs / 1000} s (${last})`
}
