// Segment trie: routes are inserted at build time (once per config version); match() runs per request.
//
// One node per path position. A node has
//   statics   child nodes keyed by the exact (canonical, case-sensitive) segment text,
//   param     one child for `:name` (whatever the names; each route keeps its own names),
//   terminal  the endpoint of routes whose path ends here,
//   wildcard  the endpoint of routes whose path is this node's path plus `/*`.
//
//   /api/users/:id   root ─statics "api"─▶ n1 ─statics "users"─▶ n2 ─param─▶ n3 (terminal)
//   /api/*           n1.wildcard
//   /api/            n1 ─statics ""─▶ n4 (terminal): a trailing slash is an empty last segment
//
// Search order at each node, with backtracking (README.md "Matching"): the path ends here → terminal, then wildcard with
// an empty rest (so `/api/*` answers `/api`); otherwise static child > param child (never an empty segment)
// > wildcard (rest of the path, possibly empty, as for `/api/`). An endpoint counts as a match only when
// the picker accepts it (method, headers); otherwise the search goes on, so a later branch may still win.
//
// Static route segments are put in canonical form at build time (config/route-path.ts); the router then
// compares them with the segment text of a canonical request path (http/canonical-path.ts) byte for byte
// and never decodes anything per request.
//
// Hot path (bench/micro/router-bench.ts): segments are found with indexOf('/') and compared in place, never
// sliced out; a node with one static child keeps it in onlyStatic, larger sets are a LabelTable (hashed
// above 8). The cost of a lookup is dominated by cache misses on the nodes it visits, so each level touches
// as few objects as possible. Backtracking visits each matching node once: at most one static and one
// param branch per segment, so the work is bounded by the route table, not by the request.
import type { RoutePath } from '../config/route-path.js'

/** Chooses a candidate of a matched endpoint (method, headers), or null to keep searching. */
export interface EndpointPicker<E, C> {
  pick(endpoint: E): C | null
}

/** Sees every endpoint whose path matches, in search order (for the Allow list of a 405). */
export interface EndpointVisitor<E> {
  visit(endpoint: E): void
}

export class TrieNode<E> {
  /** The segment text that leads here from the parent's statics ('' for the root and param nodes). */
  readonly label: string
  statics: LabelTable<TrieNode<E>> | null = null
  /** The static child when there is exactly one (the common case below the first segments): no table. */
  onlyStatic: TrieNode<E> | null = null
  param: TrieNode<E> | null = null
  terminal: E | null = null
  wildcard: E | null = null

  constructor(label: string) {
    this.label = label
  }
}

export class SegmentTrie<E> {
  readonly #root = new TrieNode<E>('')
  // One string per distinct label, so the `v1`s of a thousand routes share one (hot) string.
  readonly #labels = new Map<string, string>()
  #maxParams = 0

  /** Largest number of parameters (the wildcard included) of any route in this trie. */
  get maxParams(): number {
    return this.#maxParams
  }

  /** Build time: the endpoint for this path, made by create() if the path is new. */
  endpoint(parsed: RoutePath, create: () => E): E {
    let node = this.#root
    for (const segment of parsed.segments) {
      if (segment.kind === 'static') {
        node.statics ??= new LabelTable<TrieNode<E>>(false)
        let child = node.statics.peek(segment.label)
        if (child === undefined) {
          let label = this.#labels.get(segment.label)
          if (label === undefined) this.#labels.set(segment.label, label = segment.label)
          child = new TrieNode<E>(label)
          node.statics.add(child)
        }
        node = child
      } else {
        node.param ??= new TrieNode<E>('')
        node = node.param
      }
    }
    this.#maxParams = Math.max(this.#maxParams, parsed.paramNames.length)
    if (parsed.hasWildcard) return (node.wildcard ??= create())
    return (node.terminal ??= create())
  }

  /** Build time, after the last endpoint(): index large child tables. */
  seal(): void {
    const stack: Array<TrieNode<E>> = [this.#root]
    for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
      if (node.statics !== null) {
        node.statics.seal()
        node.statics.forEach((child) => stack.push(child))
        if (node.statics.size === 1) node.statics.forEach((child) => { node.onlyStatic = child })
      }
      if (node.param !== null) stack.push(node.param)
    }
    this.#labels.clear()
  }

  /**
   * Hot path: the first accepted candidate in search order, or null. spans receives [start, end) of each
   * parameter value on the way to it (2 entries per parameter, in path order).
   */
  find<C>(path: string, picker: EndpointPicker<E, C>, spans: Int32Array): C | null {
    if (path.charCodeAt(0) !== 0x2f) return null
    return this.#search(this.#root, path, 0, 0, picker, spans)
  }

  #search<C>(node: TrieNode<E>, path: string, pos: number, count: number,
    picker: EndpointPicker<E, C>, spans: Int32Array): C | null {
    const len = path.length
    if (pos === len) {
      if (node.terminal !== null) {
        const found = picker.pick(node.terminal)
        if (found !== null) return found
      }
      if (node.wildcard !== null) {
        spans[2 * count] = len
        spans[2 * count + 1] = len
        return picker.pick(node.wildcard)
      }
      return null
    }
    // path[pos] is '/': the next segment is path[start, end).
    const start = pos + 1
    let end = path.indexOf('/', start)
    if (end < 0) end = len
    const only = node.onlyStatic
    const child = only !== null
      ? (only.label.length === end - start && equalsAt(only.label, path, start, false) ? only : null)
      : node.statics === null ? null : node.statics.get(path, start, end)
    if (child !== null) {
      const found = this.#search(child, path, end, count, picker, spans)
      if (found !== null) return found
    }
    if (node.param !== null && end > start) {
      spans[2 * count] = start
      spans[2 * count + 1] = end
      const found = this.#search(node.param, path, end, count + 1, picker, spans)
      if (found !== null) return found
    }
    if (node.wildcard !== null) {
      spans[2 * count] = start
      spans[2 * count + 1] = len
      return picker.pick(node.wildcard)
    }
    return null
  }

  /** Visit every endpoint whose path matches, in search order (rare path: 405 responses). */
  collect(path: string, visitor: EndpointVisitor<E>): void {
    if (path.charCodeAt(0) === 0x2f) this.#collect(this.#root, path, 0, visitor)
  }

  #collect(node: TrieNode<E>, path: string, pos: number, visitor: EndpointVisitor<E>): void {
    const len = path.length
    if (pos === len) {
      if (node.terminal !== null) visitor.visit(node.terminal)
      if (node.wildcard !== null) visitor.visit(node.wildcard)
      return
    }
    const start = pos + 1
    let end = path.indexOf('/', start)
    if (end < 0) end = len
    const child = node.statics === null ? null : node.statics.get(path, start, end)
    if (child !== null) this.#collect(child, path, end, visitor)
    if (node.param !== null && end > start) this.#collect(node.param, path, end, visitor)
    if (node.wildcard !== null) visitor.visit(node.wildcard)
  }
}

// ---------------------------------------------------------------------------------------------------------
// LabelTable: lookup of a label given as a slice of a larger string (a path segment, a host name or suffix)
// without cutting the slice out, so no substring is allocated per request. Items carry their own label, so
// a hit loads nothing but the item (which the caller needs next anyway) and its label.
//
// Invariant: after seal(), a table with more than SMALL_TABLE items is also an open-addressing hash table
// (`slots`: a power of two at least twice the item count, linear probing, null = empty) keyed by FNV-1a
// over the label's char codes. Smaller tables are scanned linearly, which beats hashing for a handful.

const SMALL_TABLE = 8

/** What a LabelTable holds: anything that knows its label. */
export interface Labelled {
  readonly label: string
}

export class LabelTable<V extends Labelled> {
  readonly #items: V[] = []
  readonly #index = new Map<string, V>() // build time only
  #slots: Array<V | null> | null = null
  #mask = 0
  readonly #isFolded: boolean

  /** isFolded: labels are lower-case ASCII and lookups ignore ASCII case (host names). */
  constructor(isFolded: boolean) {
    this.#isFolded = isFolded
  }

  get size(): number {
    return this.#items.length
  }

  /** Build time: the item stored under label. */
  peek(label: string): V | undefined {
    return this.#index.get(this.#isFolded ? label.toLowerCase() : label)
  }

  /** Build time: every item, in insertion order. */
  forEach(visit: (item: V) => void): void {
    for (const item of this.#items) visit(item)
  }

  /** Build time: the label must not be present yet, and must be lower-case when the table is folded. */
  add(item: V): void {
    if (this.#isFolded && item.label !== item.label.toLowerCase()) throw new Error(`label must be lower-case: ${item.label}`)
    if (this.#index.has(item.label)) throw new Error(`duplicate label: ${item.label}`)
    this.#index.set(item.label, item)
    this.#items.push(item)
    this.#slots = null
  }

  /** Build time: index large tables by hash. */
  seal(): void {
    const count = this.#items.length
    if (count <= SMALL_TABLE) return
    let size = 16
    while (size < count * 2) size *= 2
    const slots = new Array<V | null>(size).fill(null)
    const mask = size - 1
    for (const item of this.#items) {
      let slot = hash(item.label, 0, item.label.length, false) & mask
      while (slots[slot] !== null) slot = (slot + 1) & mask
      slots[slot] = item
    }
    this.#slots = slots
    this.#mask = mask
  }

  /** Hot path: the item whose label equals s[start, end) (ignoring ASCII case if folded), or null. */
  get(s: string, start: number, end: number): V | null {
    const isFolded = this.#isFolded
    const n = end - start
    const slots = this.#slots
    if (slots === null) {
      const items = this.#items
      for (let i = 0; i < items.length; i++) {
        const item = items[i] as V
        if (item.label.length === n && equalsAt(item.label, s, start, isFolded)) return item
      }
      return null
    }
    const mask = this.#mask
    let slot = hash(s, start, end, isFolded) & mask
    for (let item = slots[slot] as V | null; item !== null; item = slots[slot] as V | null) {
      if (item.label.length === n && equalsAt(item.label, s, start, isFolded)) return item
      slot = (slot + 1) & mask
    }
    return null
  }
}

function hash(s: string, start: number, end: number, isFolded: boolean): number {
  let h = 0x811c9dc5
  for (let i = start; i < end; i++) {
    let c = s.charCodeAt(i)
    if (isFolded && c >= 0x41 && c <= 0x5a) c |= 0x20
    h = Math.imul(h ^ c, 0x01000193)
  }
  return h ^ (h >>> 15)
}

/** label equals s[start, start + label.length); label is lower-case when isFolded. */
function equalsAt(label: string, s: string, start: number, isFolded: boolean): boolean {
  for (let i = 0; i < label.length; i++) {
    let c = s.charCodeAt(start + i)
    if (isFolded && c >= 0x41 && c <= 0x5a) c |= 0x20
    if (c !== label.charCodeAt(i)) return false
  }
  return true
}
