// The CI smoke of `npm run bench -- --quick`: proves the harness still starts an upstream and a peer,
// drives load through it and reports. It asserts no speed: a slow machine must not fail it.
// Runs the compiled harness, so `npm test` (tsc first) must have built dist/.
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it, onTestFinished } from 'vitest'

const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
const runJs = join(repoRoot, 'dist', 'bench', 'run.js')

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

function runBench(args: readonly string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [runJs, ...args], { cwd: repoRoot, timeout: 25_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null
      resolve({ code, stdout, stderr })
    })
  })
}

interface JsonReport {
  scenarios: { name: string, results: { peer: string, rps: { median: number } | null }[] }[]
}

describe('npm run bench -- --quick', () => {
  it('measures the thinnest forwarder and the upstream and prints both in a table and the JSON report', async () => {
    expect(existsSync(runJs), `${runJs} is missing: build first (npx tsc -p .)`).toBe(true)
    const dir = mkdtempSync(join(tmpdir(), 'bench-smoke-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const jsonPath = join(dir, 'out.json')

    const run = await runBench(['--quick', '--only', 'undici-stream,direct', '--json', jsonPath])

    expect(run.code, run.stderr).toBe(0)
    const row = /^\| undici-stream\s+\|\s+([\d,]+) \|/m.exec(run.stdout)
    expect(row, run.stdout).not.toBeNull()
    expect(Number(row![1]!.replaceAll(',', ''))).toBeGreaterThan(0)
    expect(run.stdout).toMatch(/^\| direct\s+\|\s+[\d,]+ \|/m)

    const report = JSON.parse(readFileSync(jsonPath, 'utf8')) as JsonReport
    const small = report.scenarios.find((s) => s.name === 'small')
    const thin = small?.results.find((r) => r.peer === 'undici-stream')
    expect(thin?.rps?.median).toBeGreaterThan(0)
  })

  it('rejects an unknown peer name with exit code 2 and the list of known peers', async () => {
    const run = await runBench(['--quick', '--only', 'no-such-peer'])

    expect(run.code).toBe(2)
    expect(run.stderr).toContain('unknown peer(s) no-such-peer')
    expect(run.stderr).toContain('undici-stream')
  })
})
