// The bench freezes every peer but the one under load (bench/lib/processes.ts setFrozen).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { clockTicksPerSecond, freePort, readGroupCpuTicks, spawnChild } from '../../bench/lib/processes.js'

/** The state letter of /proc/<pid>/stat: R, S, T (stopped), ... */
function stateOf(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
}

/** Polls /proc until the state matches (no event tells when a signal took effect); bounded to 10 s. */
async function waitForState(pid: number, isWanted: (state: string) => boolean): Promise<string> {
  let state = stateOf(pid)
  for (let i = 0; i < 2_000 && !isWanted(state); i++) {
    await new Promise((resolve) => setTimeout(resolve, 5))
    state = stateOf(pid)
  }
  return state
}

describe('spawnChild().setFrozen', () => {
  it('stops the child and its own children, resumes them, and stop() still ends a frozen child', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-bench-proc-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    // A parent that starts a grandchild and prints its pid: the freeze must reach the whole group, as it
    // must reach nginx's and haproxy's workers. The SIGTERM handler is installed before the pid is printed:
    // the test acts on the pid at once, and a SIGTERM before the handler would kill the parent by default
    // (exit code null; failed once in CI under load).
    const script = `const { spawn } = require('node:child_process');
const c = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
process.on('SIGTERM', () => { c.kill('SIGTERM'); process.exit(0) });
console.log('grandchild ' + c.pid);
setInterval(() => {}, 1000);`
    const logPath = join(dir, 'log')
    const child = spawnChild('frozen-test', process.execPath, ['-e', script], { core: null, logPath })
    onTestFinished(async () => { await child.stop(2_000) })
    let grandchild = 0
    for (let i = 0; i < 500 && grandchild === 0; i++) {
      const match = /grandchild (\d+)/.exec(readFileSync(logPath, 'utf8'))
      if (match !== null) grandchild = Number(match[1])
      else await new Promise((resolve) => setTimeout(resolve, 10))
    }
    expect(grandchild).toBeGreaterThan(0)

    child.setFrozen(true)
    expect(await waitForState(child.pid, (s) => s === 'T')).toBe('T')
    expect(await waitForState(grandchild, (s) => s === 'T')).toBe('T')

    child.setFrozen(false)
    expect(await waitForState(child.pid, (s) => s !== 'T')).not.toBe('T')
    expect(await waitForState(grandchild, (s) => s !== 'T')).not.toBe('T')

    child.setFrozen(true)
    expect(await waitForState(child.pid, (s) => s === 'T')).toBe('T')
    // SIGTERM to a stopped process stays pending: stop() thaws it first, so it exits cleanly.
    expect(await child.stop(5_000)).toBe(0)
  })
})

describe('readGroupCpuTicks', () => {
  it('counts the CPU time of a child and of its own children, and nothing once they are gone', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-bench-cpu-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    // Parent and grandchild each spin for 300 ms of their own CPU time, then wait to be stopped: the group's
    // total is at least 600 ms, which the parent's /proc entry alone would not show (like nginx's worker).
    const spin = 'const t = process.cpuUsage(); while ((process.cpuUsage(t).user + process.cpuUsage(t).system) < 300000); console.log("spun");'
    const script = `const { spawn } = require('node:child_process');
const c = spawn(process.execPath, ['-e', ${JSON.stringify(`${spin} setInterval(() => {}, 1000)`)}], { stdio: 'inherit' });
process.on('SIGTERM', () => { c.kill('SIGTERM'); process.exit(0) });
${spin} setInterval(() => {}, 1000);`
    const logPath = join(dir, 'log')
    const child = spawnChild('cpu-test', process.execPath, ['-e', script], { core: null, logPath })
    onTestFinished(async () => { await child.stop(2_000) })
    for (let i = 0; i < 3_000 && (readFileSync(logPath, 'utf8').match(/spun/g) ?? []).length < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10))
    }

    const seconds = readGroupCpuTicks(child.pid)! / clockTicksPerSecond()

    expect(seconds).toBeGreaterThanOrEqual(0.55) // tick rounding
    await child.stop(5_000)
    await new Promise((resolve) => setTimeout(resolve, 200)) // the grandchild's own SIGTERM
    expect(readGroupCpuTicks(child.pid)).toBeNull()
  })
})

describe('freePort', () => {
  it('never hands out a port twice in one process, asked one after the other or many at once', async () => {
    // The kernel gives released ports again: among 600 draws from its ~28,000, some repeat almost surely
    // (a peer once got the same port for its listener and its admin).
    const ports: number[] = []
    for (let i = 0; i < 300; i++) ports.push(await freePort())
    ports.push(...await Promise.all(Array.from({ length: 300 }, () => freePort())))
    expect(new Set(ports).size).toBe(ports.length)
  })
})
