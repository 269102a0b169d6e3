// routes.yaml text -> plain value, keeping the parsed document so every later problem can be located as
// `file:line:col`. `${VAR}` / `${VAR:-default}` are substituted here, on the parsed scalars, so positions and
// YAML quoting stay right: a plain `port: ${P}` is read again as a plain scalar (a number stays a number),
// a quoted "${P}" stays a string. `$${` writes a literal `${`.
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import type { CollectionTag, Document, Node, ScalarTag } from 'yaml'
import type { ConfigIssue } from '../errors.js'
import { formatPath, type IssueTarget, type PathSegment } from './validate-value.js'

type YamlModule = typeof import('yaml')

/**
 * `yaml`'s Node build reads process.env.LOG_TOKENS, a debug switch, for every token it lexes: a getenv()
 * call each, 500,000 of them for 10,000 routes, about 15% of the parse (more in a large environment). The
 * package also publishes a platform-neutral ES module build (its `default` export condition), the same code
 * and version with those reads compiled out: load that one, and the Node build only if it cannot be found.
 */
async function loadYaml(): Promise<{ readonly build: 'neutral' | 'node'; readonly yaml: YamlModule }> {
  try {
    // `yaml` resolves to <package>/dist/index.js; the neutral build is <package>/browser/dist/index.js.
    const nodeEntry = pathToFileURL(createRequire(import.meta.url).resolve('yaml'))
    return { build: 'neutral', yaml: (await import(new URL('../browser/dist/index.js', nodeEntry).href)) as YamlModule }
  } catch {
    return { build: 'node', yaml: await import('yaml') }
  }
}

const loaded = await loadYaml()
const { isMap, isScalar, isSeq, isAlias, LineCounter, parseDocument } = loaded.yaml
/** Which build of `yaml` parses (for the micro-benchmarks): `neutral` unless it could not be loaded. */
export const yamlBuild = loaded.build

export interface YamlSource {
  /** The document as plain data (null for an empty file). Meaningless when `issues` holds an error. */
  readonly value: unknown
  /** Syntax errors, `${VAR}` errors and YAML warnings. */
  readonly issues: readonly ConfigIssue[]
  /** `file:line:col` of the node at `path` (or of its key, or of its parent); the nearest existing node if absent. */
  locate(path: readonly PathSegment[], at?: IssueTarget): string
}

export function parseYamlSource(text: string, file: string, env: NodeJS.ProcessEnv): YamlSource {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, merge: true })
  const where = (offset: number): string => {
    const { line, col } = lineCounter.linePos(offset)
    return `${file}:${line}:${col}`
  }
  const issues: ConfigIssue[] = []
  for (const e of doc.errors) issues.push({ where: where(e.pos[0]), path: '', message: firstLine(e.message), severity: 'error' })
  for (const w of doc.warnings) issues.push({ where: where(w.pos[0]), path: '', message: firstLine(w.message), severity: 'warning' })
  let value: unknown = null
  if (doc.errors.length === 0) {
    if (text.includes('${')) substituteNode(doc, doc.contents, [], env, (node, message, path) => {
      issues.push({ where: where(node.range?.[0] ?? 0), path: formatPath(path), message, severity: 'error' })
    })
    try {
      value = doc.toJS()
    } catch (err) {
      issues.push({ where: `${file}:1:1`, path: '', message: err instanceof Error ? err.message : String(err), severity: 'error' })
    }
  }
  return {
    value,
    issues,
    locate: (path, at = 'value') => where(findOffset(doc, path, at)),
  }
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message
}

// ---- positions ------------------------------------------------------------------------------------------

function findOffset(doc: Document, path: readonly PathSegment[], at: IssueTarget): number {
  const wanted = at === 'parent' ? path.slice(0, -1) : path
  let node: unknown = doc.contents
  let keyNode: unknown
  let depth = 0
  for (const seg of wanted) {
    if (isAlias(node)) node = node.resolve(doc)
    let next: unknown
    let nextKey: unknown
    if (isMap(node)) {
      const pair = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(seg))
      if (pair !== undefined) {
        nextKey = pair.key
        // `key:` with no value: point at the key.
        next = pair.value === null || (isScalar(pair.value) && pair.value.value === null && pair.value.source === '') ? pair.key : pair.value
      }
    } else if (isSeq(node) && typeof seg === 'number') {
      next = node.items[seg]
    }
    if (next === undefined || next === null) break
    node = next
    keyNode = nextKey
    depth++
  }
  const isComplete = depth === wanted.length
  const target = isComplete && at === 'key' && keyNode !== undefined ? keyNode : node
  return rangeStart(target)
}

function rangeStart(node: unknown): number {
  if (typeof node === 'object' && node !== null && 'range' in node) {
    const range = (node as Node).range
    if (range !== undefined && range !== null) return range[0]
  }
  return 0
}

// ---- ${VAR} substitution --------------------------------------------------------------------------------

type SubstitutionError = (node: Node, message: string, path: readonly PathSegment[]) => void

const VARIABLE = /\$\$\{|\$\{([^}]*)\}|\$\{/g
const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

function substituteNode(doc: Document, node: unknown, path: PathSegment[], env: NodeJS.ProcessEnv, onError: SubstitutionError): void {
  if (isMap(node)) {
    for (const pair of node.items) {
      path.push(isScalar(pair.key) ? String(pair.key.value) : String(pair.key))
      substituteNode(doc, pair.value, path, env, onError)
      path.pop()
    }
  } else if (isSeq(node)) {
    for (let i = 0; i < node.items.length; i++) {
      path.push(i)
      substituteNode(doc, node.items[i], path, env, onError)
      path.pop()
    }
  } else if (isScalar(node) && typeof node.value === 'string' && node.value.includes('${')) {
    const original = node.value
    let failed = false
    const replaced = original.replace(VARIABLE, (match: string, body: string | undefined) => {
      if (match === '$${') return '${'
      const result = resolveVariable(match, body, env)
      if (typeof result === 'string') return result
      failed = true
      onError(node, result.error, [...path])
      return match
    })
    if (!failed) node.value = node.type === 'PLAIN' ? resolvePlainScalar(doc, replaced) : replaced
  }
}

function resolveVariable(match: string, body: string | undefined, env: NodeJS.ProcessEnv): string | { error: string } {
  if (body === undefined) return { error: `unterminated "\${" in ${JSON.stringify(match)}; write $\${ for a literal "\${"` }
  const sep = body.indexOf(':-')
  const name = sep === -1 ? body : body.slice(0, sep)
  if (!VARIABLE_NAME.test(name)) return { error: `invalid variable name in "${match}": expected \${NAME} or \${NAME:-default}` }
  const set = env[name]
  if (sep !== -1) return set === undefined || set === '' ? body.slice(sep + 2) : set
  if (set === undefined) return { error: `environment variable ${name} is not set (use \${${name}:-default} to give a default)` }
  return set
}

/** Reads a string as YAML 1.2 would read a plain scalar there: `8080` -> 8080, `true` -> true, `` -> null. */
function resolvePlainScalar(doc: Document, text: string): unknown {
  for (const tag of doc.schema.tags) {
    if (tag.default === true && isScalarTag(tag) && tag.test?.test(text) === true) {
      const resolved = tag.resolve(text, () => undefined, {})
      return isScalar(resolved) ? resolved.value : resolved // the null tag resolves to a Scalar node
    }
  }
  return text
}

function isScalarTag(tag: CollectionTag | ScalarTag): tag is ScalarTag {
  return 'test' in tag && tag.test instanceof RegExp
}
