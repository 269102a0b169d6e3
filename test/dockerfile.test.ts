// No Docker engine runs on our CI machines, so the image is checked in two parts: the Dockerfile says what
// README.md "Deployment" promises, and its runtime stage (production dependencies only) really runs the
// gateway.
import { execFileSync, spawnSync } from 'node:child_process'
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'

const root = resolve(import.meta.dirname, '..')
const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8')

describe('Dockerfile', () => {
  it('is multi-stage, runs as a non-root user, exposes 8080 and 9901, checks /healthz', () => {
    expect(dockerfile.match(/^FROM /gm)?.length).toBeGreaterThanOrEqual(2)
    expect(dockerfile).toMatch(/^FROM .* AS build$/m)
    expect(dockerfile).toMatch(/npm ci --omit=dev/)
    expect(dockerfile).toMatch(/^USER (?!root)\w+$/m)
    expect(dockerfile).toMatch(/^EXPOSE 8080 9901$/m)
    expect(dockerfile).toMatch(/^HEALTHCHECK [\s\S]*\/healthz/m)
    expect(dockerfile).toMatch(/\/etc\/tollgate\/routes\.yaml/)
  })

  it('builds on a maintained Node LTS line, and README mounts a config directory and publishes the admin port', () => {
    // Node 20 reached end of life on 2026-04-30; 22 is maintained until 2027-04-30, 24 until 2028-04-30.
    const majors = [...dockerfile.matchAll(/^FROM node:(\d+)/gm)].map((m) => Number(m[1]))
    expect(majors.length).toBeGreaterThanOrEqual(2)
    for (const major of majors) expect([22, 24]).toContain(major)
    const readme = readFileSync(join(root, 'README.md'), 'utf8')
    const run = /^docker run .*$/m.exec(readme)?.[0] ?? ''
    expect(run).toMatch(/-v "\$PWD\/config:\/etc\/tollgate:ro"/)
    expect(run).toMatch(/-p 127\.0\.0\.1:9901:9901/)
  })

  it('runtime stage: the gateway starts from production dependencies only', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-image-'))
    try {
      for (const f of ['package.json', 'package-lock.json', 'routes.yaml']) cpSync(join(root, f), join(dir, f))
      cpSync(join(root, 'dist/src'), join(dir, 'dist/src'), { recursive: true })
      cpSync(join(root, 'schema'), join(dir, 'schema'), { recursive: true })
      execFileSync('npm', ['ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'ignore' })
      expect(() => readFileSync(join(dir, 'node_modules/vitest/package.json'))).toThrow()
      writeFileSync(join(dir, 'probe.mjs'), "import('./dist/src/main.js').then(() => console.log('loaded'))\n")
      const loaded = spawnSync(process.execPath, ['probe.mjs'], { cwd: dir, encoding: 'utf8' })
      expect(loaded.stderr).toBe('')
      expect(loaded.stdout.trim()).toBe('loaded')
      const validate = spawnSync(process.execPath, ['dist/src/cli.js', 'validate', 'routes.yaml'], { cwd: dir, encoding: 'utf8' })
      expect(validate.status, validate.stderr).toBe(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 120_000)
})
