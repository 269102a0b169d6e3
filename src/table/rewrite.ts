// `rewrite` of a route, compiled once: a function from the canonical path and the route parameters to the
// path sent upstream.
import type { Route } from '../config/schema.js'

export type RewriteFn = (path: string, params: Readonly<Record<string, string>>) => string

const identity: RewriteFn = (path) => path

/**
 * rewrite.stripPrefix: remove the prefix from the canonical path, on a segment boundary only (`/api` strips
 * `/api/x` and `/api`, never `/apiary`); an empty result forwards `/`.
 * rewrite.path: a template; `:name` takes the route parameter, `*` the wildcard rest. Both work on the
 * canonical path and build the result by concatenation, never by URL resolution (a `..` in a template or parameter can never climb out). The
 * template is split at build time into literals and parameter names, so a request only concatenates.
 */
export function compileRewrite(route: Route): RewriteFn {
  const rewrite = route.rewrite
  if (rewrite === undefined) return identity
  if ('stripPrefix' in rewrite) {
    const strip = rewrite.stripPrefix
    const prefix = strip.length > 1 && strip.endsWith('/') ? strip.slice(0, -1) : strip
    if (prefix === '/') return identity
    const n = prefix.length
    return (path) => {
      if (!path.startsWith(prefix)) return path
      if (path.length === n) return '/'
      return path.charCodeAt(n) === 0x2f ? path.slice(n) : path
    }
  }
  // '/internal/u/:id/f/*' -> literals ['/internal/u/', '/f/'], names ['id', '*'], tail ''.
  const literals: string[] = []
  const names: string[] = []
  let text = ''
  for (const segment of rewrite.path.split('/').slice(1)) {
    text += '/'
    if (segment === '*' || segment.startsWith(':')) {
      literals.push(text)
      names.push(segment === '*' ? '*' : segment.slice(1))
      text = ''
    } else {
      text += segment
    }
  }
  const tail = text
  if (names.length === 0) return () => tail
  return (_path, params) => {
    let out = ''
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!
      const value = params[name] ?? ''
      // The wildcard rest may itself start with '/' (paths.mergeSlashes: false): do not double it.
      out += name === '*' && value.charCodeAt(0) === 0x2f ? literals[i]!.slice(0, -1) + value : literals[i]! + value
    }
    return out + tail
  }
}
