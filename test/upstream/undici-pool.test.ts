// src/upstream/undici-pool.ts loads undici's Pool by its file inside the package, to leave the rest of undici
// unloaded. That path is undici's internal layout, not its API: pin it, and say what to fix when it moves.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { describe, expect, it } from 'vitest'

const require = createRequire(import.meta.url)
const DEEP_PATH = 'undici/lib/dispatcher/pool.js'
const MOVED = 'undici moved lib/dispatcher/pool.js; update src/upstream/undici-pool.ts'

function resolveDeepPath(): string {
  try {
    return require.resolve(DEEP_PATH)
  } catch (err) {
    throw new Error(`${MOVED} (${DEEP_PATH} does not resolve)`, { cause: err })
  }
}

describe('the deep import of undici', () => {
  it('resolves lib/dispatcher/pool.js inside the undici package', () => {
    const packageDir = dirname(require.resolve('undici/package.json'))
    expect(resolveDeepPath(), MOVED).toBe(join(packageDir, 'lib', 'dispatcher', 'pool.js'))
  })

  it('finds there the Pool class the package exports', async () => {
    const deep: unknown = require(resolveDeepPath())
    const { Pool: publicPool } = require('undici') as typeof import('undici')
    expect(deep, `${MOVED} (the file no longer exports undici's Pool)`).toBe(publicPool)
    const { Pool } = await import('../../src/upstream/undici-pool.js')
    expect(Pool).toBe(publicPool)
  })

  it('pins the undici version in package.json, so that a bump is deliberate and runs these checks', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> }
    const { version } = require('undici/package.json') as { version: string }
    expect(pkg.dependencies['undici'], 'package.json must name the exact undici version installed').toBe(version)
  })
})
