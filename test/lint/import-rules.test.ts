// `npm run lint` (.dependency-cruiser.cjs) fails on an import against the layering and on a runtime cycle.
// A run copies src/ into a temporary directory, adds bad imports, and runs the same command.
import { execFile } from 'node:child_process'
import { appendFileSync, cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'

const root = resolve(import.meta.dirname, '../..')
const depcruise = join(root, 'node_modules', '.bin', 'depcruise')

async function lintWith(additions: ReadonlyArray<readonly [file: string, line: string]>): Promise<{ status: number | null; output: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-lint-'))
  try {
    cpSync(join(root, 'src'), join(dir, 'src'), { recursive: true })
    cpSync(join(root, 'tsconfig.json'), join(dir, 'tsconfig.json'))
    cpSync(join(root, '.dependency-cruiser.cjs'), join(dir, '.dependency-cruiser.cjs'))
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'))
    for (const [file, line] of additions) appendFileSync(join(dir, file), `\n${line}\n`)
    return await new Promise((resolve) => {
      execFile(depcruise, ['src', '--config', '.dependency-cruiser.cjs', '--output-type', 'err'], { cwd: dir, encoding: 'utf8' }, (err, stdout, stderr) => {
        resolve({ status: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, output: stdout + stderr })
      })
    })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

describe('npm run lint', () => {
  it('passes on the tree as it is', { timeout: 60_000 }, async () => {
    const r = await lintWith([])
    expect(r.output).toContain('no dependency violations')
    expect(r.status).toBe(0)
  })

  it('fails on each import against the layering and on a runtime cycle, naming the rule and the files', { timeout: 60_000 }, async () => {
    const r = await lintWith([
      // the router imports the table above it
      ['src/router/router.ts', "import { RouteTable } from '../table/route-table.js'\nexport const leak = RouteTable"],
      // config/, the bottom layer, imports telemetry/
      ['src/config/load.ts', "import { Metrics } from '../telemetry/metrics.js'\nexport const leak = Metrics"],
      // admin/ imports its sibling proxy/
      ['src/admin/admin-server.ts', "import { ProxyState } from '../proxy/proxy-state.js'\nexport const leak = ProxyState"],
      // forward.ts takes a value from exchange.ts, which imports forward.ts: a runtime cycle (the type-only
      // import already there is not one)
      ['src/proxy/forward.ts', "import { refuseInProgress } from './exchange.js'\nexport const leak = refuseInProgress"],
    ])
    expect(r.status).not.toBe(0)
    expect(r.output).toMatch(/layering:router: src\/router\/router\.ts → src\/table\/route-table\.ts/)
    expect(r.output).toMatch(/layering:config: src\/config\/load\.ts → src\/telemetry\/metrics\.ts/)
    expect(r.output).toMatch(/layering:admin: src\/admin\/admin-server\.ts → src\/proxy\/proxy-state\.ts/)
    expect(r.output).toMatch(/no-circular: src\/proxy\/(forward|exchange)\.ts →/)
  })
})
