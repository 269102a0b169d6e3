// src/config/yaml-source.ts loads yaml's platform-neutral ES module build by its path inside the package
// (browser/dist/index.js next to the Node build's dist/index.js) and silently falls back to the Node build
// when that fails. The path is yaml's internal layout: pin it, so the fallback never hides a move.
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'

const require = createRequire(import.meta.url)
const MOVED = 'yaml moved browser/dist/index.js; update src/config/yaml-source.ts'
// The same derivation as yaml-source.ts: the Node entry, then ../browser/dist/index.js.
const NEUTRAL = new URL('../browser/dist/index.js', pathToFileURL(require.resolve('yaml')))

describe('the deep import of yaml', () => {
  it('finds the neutral build where yaml-source.ts looks for it', () => {
    expect(existsSync(NEUTRAL), `${MOVED} (${NEUTRAL.pathname} does not exist)`).toBe(true)
  })

  it('finds there the functions yaml-source.ts uses, the same as the Node build\'s', async () => {
    const neutral = (await import(NEUTRAL.href).catch((err: unknown) => {
      throw new Error(`${MOVED} (${NEUTRAL.pathname} does not load)`, { cause: err })
    })) as Record<string, unknown>
    const node = (await import('yaml')) as unknown as Record<string, unknown>
    for (const name of ['parseDocument', 'LineCounter', 'isMap', 'isScalar', 'isSeq', 'isAlias']) {
      expect(typeof neutral[name], `${MOVED} (it no longer exports ${name})`).toBe('function')
      expect(typeof node[name]).toBe('function')
    }
  })

  it('is the build yaml-source.ts loaded', async () => {
    const { yamlBuild } = await import('../../src/config/yaml-source.js')
    expect(yamlBuild, `${MOVED} (yaml-source.ts fell back to the Node build)`).toBe('neutral')
  })

  it('pins the yaml version in package.json, so that a bump is deliberate and runs these checks', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> }
    const { version } = require('yaml/package.json') as { version: string }
    expect(pkg.dependencies['yaml'], 'package.json must name the exact yaml version installed').toBe(version)
  })
})
