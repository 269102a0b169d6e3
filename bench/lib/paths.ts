// Where things are, from the compiled file's point of view: this file runs as dist/bench/lib/paths.js.
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'

/** The compiled output directory, `dist/`. */
export const distDir = fileURLToPath(new URL('../../', import.meta.url))
/** The repository root. */
export const repoRoot = join(distDir, '..')
/** A compiled bench script, e.g. `benchScript('peers/http-proxy.js')`. */
export const benchScript = (relative: string): string => join(distDir, 'bench', relative)
/** The gateway's command-line entry. */
export const tollgateCli = join(distDir, 'src', 'cli.js')
/** Default place of the JSON report; bench/.gitignore keeps it out of git. */
export const defaultJsonPath = join(repoRoot, 'bench', 'results', 'last.json')
