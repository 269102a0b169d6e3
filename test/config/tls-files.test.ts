import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { beforeAll, afterAll, describe, expect, it } from 'vitest'
import { loadConfigFile } from '../../src/config/load.js'
import { loadTlsFiles } from '../../src/config/tls-files.js'
import { ConfigError, formatIssue } from '../../src/errors.js'
import { TestCa } from '../helpers/certs.js'
import { CLI } from '../helpers/gateway.js'

const ROUTE = ['upstreams: { u0: { targets: [{ url: "http://127.0.0.1:9009" }] } }', 'routes: [{ id: r0, match: { path: /r0 }, upstream: u0 }]']

let dir: string
let ca: TestCa

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tollgate-tls-config-'))
  mkdirSync(join(dir, 'certs'))
  ca = new TestCa(join(dir, 'certs'))
  ca.server('api', 'api.test', ['api.test', '*.api.test'])
  ca.server('other', 'other.test', ['other.test'])
  ca.server('cn-only', 'cn.test', [])
  writeFileSync(join(dir, 'certs', 'garbage.pem'), 'not a certificate\n')
  writeFileSync(join(dir, 'certs', 'bad-body.pem'), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')
})

afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Writes routes.yaml (its `tls:` lines first, from line 1) and loads it. */
function load(...tlsLines: string[]): ReturnType<typeof loadConfigFile> {
  const file = join(dir, 'routes.yaml')
  writeFileSync(file, [...tlsLines, ...ROUTE].join('\n') + '\n')
  return loadConfigFile(file, {})
}

function problems(...tlsLines: string[]): string[] {
  try {
    load(...tlsLines)
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map(formatIssue)
    throw err
  }
  throw new Error('expected the config to be rejected')
}

describe('tls: files', () => {
  it('reads paths relative to the config file\'s directory and takes the names from subjectAltName (the CN without one)', () => {
    const { config } = load(
      'tls:',
      '  certificates:',
      '    - { cert: certs/api.pem, key: certs/api-key.pem }',
      '    - { cert: certs/cn-only.pem, key: certs/cn-only-key.pem }',
      '  minVersion: TLSv1.3',
    )
    expect(config.tls?.minVersion).toBe('TLSv1.3')
    expect(config.tls?.certificates.map((c) => c.names)).toEqual([['api.test', '*.api.test'], ['cn.test']])
    expect(config.tls?.certificates[0]?.cert).toBe(join(dir, 'certs', 'api.pem'))
    expect(config.tls?.certificates[0]?.certPem).toContain('-----BEGIN CERTIFICATE-----')
    expect(config.tls?.certificates[0]?.subject).toBe('CN=api.test')
  })

  it('defaults minVersion to TLSv1.2 and needs at least one certificate', () => {
    expect(load('tls:', '  certificates: [{ cert: certs/api.pem, key: certs/api-key.pem }]').config.tls?.minVersion).toBe('TLSv1.2')
    expect(problems('tls: { certificates: [] }')).toEqual([`${join(dir, 'routes.yaml')}:1:22 tls.certificates: must have at least 1 item, got 0`])
  })

  it('names the file, line, column and field of a missing file, PEM garbage and a key of another certificate, each on one line', () => {
    const lines = problems(
      'tls:',                                                                      // 1
      '  certificates:',                                                           // 2
      '    - { cert: certs/missing.pem, key: certs/api-key.pem }',                 // 3
      '    - { cert: certs/garbage.pem, key: certs/garbage.pem }',                 // 4
      '    - { cert: certs/bad-body.pem, key: certs/api-key.pem }',                // 5
      '    - { cert: certs/api.pem, key: certs/other-key.pem }',                   // 6
      '  clientAuth: { ca: certs/nope.pem }',                                     // 7
    )
    const file = join(dir, 'routes.yaml')
    const certs = join(dir, 'certs')
    expect(lines).toEqual([
      `${file}:3:15 tls.certificates[0].cert: cannot read ${certs}/missing.pem: no such file`,
      `${file}:4:15 tls.certificates[1].cert: ${certs}/garbage.pem holds no PEM certificate (no "-----BEGIN CERTIFICATE-----" line)`,
      expect.stringMatching(new RegExp(`^${file}:4:39 tls\\.certificates\\[1\\]\\.key: ${certs}/garbage\\.pem holds no readable PEM private key: .+$`)),
      expect.stringMatching(new RegExp(`^${file}:5:15 tls\\.certificates\\[2\\]\\.cert: ${certs}/bad-body\\.pem holds no readable PEM certificate: .+$`)),
      `${file}:6:35 tls.certificates[3].key: ${certs}/other-key.pem is not the key of the certificate ${certs}/api.pem (CN=api.test); name the key it was issued for`,
      `${file}:7:21 tls.clientAuth.ca: cannot read ${certs}/nope.pem: no such file`,
    ])
    for (const line of lines) expect(line).not.toMatch(/\n|\s+at /)
  })

  it('rejects an expired certificate and warns about one not valid yet', () => {
    const certs = join(dir, 'certs')
    const tls = { certificates: [{ cert: 'certs/api.pem', key: 'certs/api-key.pem' }], minVersion: 'TLSv1.2' as const }
    const locate = (): string => 'routes.yaml:1:1'
    const later = loadTlsFiles(tls, join(dir, 'routes.yaml'), locate, Date.now() + 3 * 86_400_000)
    expect(later.tls).toBeNull()
    expect(later.issues.map(formatIssue)).toEqual([expect.stringMatching(new RegExp(`^routes\\.yaml:1:1 tls\\.certificates\\[0\\]\\.cert: ${certs}/api\\.pem expired on \\S+ \\(CN=api\\.test\\); clients would refuse it$`))])
    const earlier = loadTlsFiles(tls, join(dir, 'routes.yaml'), locate, Date.now() - 86_400_000)
    expect(earlier.tls).not.toBeNull()
    expect(earlier.issues).toEqual([expect.objectContaining({ severity: 'warning', message: expect.stringContaining('is not valid before') })])
  })

  it('refuses an encrypted key with a plain reason', () => {
    const certs = join(dir, 'certs')
    copyFileSync(join(certs, 'api-key.pem'), join(certs, 'plain-key.pem'))
    // openssl pkey -aes256: the same key under a passphrase
    execFileSync('openssl', ['pkey', '-in', join(certs, 'plain-key.pem'), '-aes256', '-passout', 'pass:secret', '-out', join(certs, 'enc-key.pem')], { stdio: 'pipe' })
    expect(problems('tls: { certificates: [{ cert: certs/api.pem, key: certs/enc-key.pem }] }'))
      .toEqual([expect.stringContaining('tls.certificates[0].key: ' + join(certs, 'enc-key.pem') + ' is an encrypted private key; a passphrase is not supported')])
  })

  it('tollgate validate (the built CLI) runs the same checks: one line per problem, no stack trace', () => {
    const file = join(dir, 'routes.yaml')
    writeFileSync(file, ['tls:', '  certificates: [{ cert: certs/api.pem, key: certs/other-key.pem }]', ...ROUTE].join('\n') + '\n')
    const r = spawnSync(process.execPath, [CLI, 'validate', file], { encoding: 'utf8', timeout: 20_000 })
    expect(r.status).not.toBe(0)
    expect(r.stderr.trim().split('\n')).toEqual([
      `${file}:2:46 tls.certificates[0].key: ${join(dir, 'certs', 'other-key.pem')} is not the key of the certificate ${join(dir, 'certs', 'api.pem')} (CN=api.test); name the key it was issued for`,
      `${file}: invalid — 1 error`,
    ])
    writeFileSync(file, ['tls:', '  certificates: [{ cert: certs/api.pem, key: certs/api-key.pem }]', ...ROUTE].join('\n') + '\n')
    const ok = spawnSync(process.execPath, [CLI, 'validate', file], { encoding: 'utf8', timeout: 20_000 })
    expect({ status: ok.status, stderr: ok.stderr }).toEqual({ status: 0, stderr: '' })
  })
})
