// The smoke of bench/websocket-echo.ts --quick: the runner starts the echo upstream, Tollgate and the Node
// forwarder, drives messages through each from its own load process, and prints the table and ratios. It
// asserts no speed: a slow machine must not fail it. Runs the compiled runner (dist/, built by `npm test`).
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const repoRoot = fileURLToPath(new URL('../../', import.meta.url))

describe('bench websocket-echo --quick', () => {
  it('measures direct, tollgate and node-forwarder and prints the ratios', async () => {
    const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [join(repoRoot, 'dist', 'bench', 'websocket-echo.js'), '--quick', '--seconds', '1', '--connections', '4'],
        { cwd: repoRoot, timeout: 50_000 }, (error, stdout, stderr) => {
          resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stdout, stderr })
        })
    })
    expect(run.code, run.stderr).toBe(0)
    for (const name of ['direct', 'tollgate', 'node-forwarder']) {
      const row = new RegExp(`^\\| ${name} \\| (\\d+) \\|.*\\| (\\d+) \\|$`, 'm').exec(run.stdout)
      expect(row, `${name} row in:\n${run.stdout}`).not.toBeNull()
      expect(Number(row![1])).toBeGreaterThan(0) // messages went through
      expect(Number(row![2])).toBe(0) // no errors
    }
    expect(run.stdout).toMatch(/^tollgate ÷ direct: messages\/s \d+\.\d\d/m)
    expect(run.stdout).toMatch(/^tollgate ÷ node-forwarder: messages\/s \d+\.\d\d/m)
  }, 60_000)
})
