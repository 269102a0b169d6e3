// What the figures were measured on: printed above the tables and stored in the JSON report.
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { cpus, release, totalmem, type } from 'node:os'
import { join } from 'node:path'
import { repoRoot } from './paths.js'
import { findBinary } from './processes.js'

export interface Machine {
  readonly cpu: string
  readonly cores: number
  readonly memoryGiB: number
  readonly os: string
  readonly node: string
}

export function describeMachine(): Machine {
  const list = cpus()
  return {
    cpu: list[0]?.model.trim() ?? 'unknown CPU',
    cores: list.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${type()} ${release()}`,
    node: process.version,
  }
}

const VERSION_PATTERNS: Readonly<Record<string, { args: string[], pattern: RegExp }>> = {
  wrk: { args: ['-v'], pattern: /wrk (?:debian\/)?([\d.]+)/ },
  nginx: { args: ['-v'], pattern: /nginx\/([\d.]+)/ },
  haproxy: { args: ['-v'], pattern: /version ([\d.]+)/ },
  caddy: { args: ['version'], pattern: /v?([\d.]+)/ },
}

/** Version of an installed program, or null. */
export function binaryVersion(name: string): string | null {
  const known = VERSION_PATTERNS[name]
  const bin = findBinary(name)
  if (known === undefined || bin === null) return null
  const { stdout, stderr } = spawnSync(bin, known.args, { encoding: 'utf8', timeout: 5000 })
  return known.pattern.exec(`${stdout ?? ''}${stderr ?? ''}`)?.[1] ?? null
}

/** Version of an npm package installed in node_modules, or null. */
export function packageVersion(name: string): string | null {
  try {
    const json = JSON.parse(readFileSync(join(repoRoot, 'node_modules', name, 'package.json'), 'utf8')) as { version?: unknown }
    return typeof json.version === 'string' ? json.version : null
  } catch {
    return null
  }
}

export function collectVersions(): Record<string, string | null> {
  const versions: Record<string, string | null> = {}
  for (const name of ['wrk', 'nginx', 'haproxy', 'caddy']) versions[name] = binaryVersion(name)
  for (const name of ['undici', 'fastify', '@fastify/http-proxy', '@fastify/reply-from', 'fast-gateway', 'http-proxy']) {
    versions[name] = packageVersion(name)
  }
  return versions
}
