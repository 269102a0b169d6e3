// The certificates the TLS proxy listener serves (README "TLS"): one SecureContext per certificate, made
// when a config is applied, and the SNI lookup over their names, built then too: an exact-name map and a
// wildcard map keyed by the name without its first label (`*.example.com` serves `a.example.com`, not
// `example.com` nor `a.b.example.com`, as RFC 6125 §6.4.3 has it). A handshake costs one or two Map
// lookups; an unknown or missing name gets the first certificate, the default.
//
// A reload swaps the whole set in one assignment (`update`): handshakes that already started finish with the
// context they picked, open connections keep theirs, new handshakes get the new set. Nothing restarts.
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls'
import type { LoadedCertificate, LoadedTls } from '../config/schema.js'

interface Contexts {
  readonly exact: Map<string, SecureContext>
  readonly wildcard: Map<string, SecureContext>
  readonly fallback: SecureContext
  /** The options of the default context, for server.setSecureContext. */
  readonly defaultOptions: SecureContextOptions
}

export class TlsContexts {
  #contexts: Contexts
  #source: LoadedTls

  constructor(tls: LoadedTls) {
    this.#source = tls
    this.#contexts = build(tls)
  }

  /** For tls.createServer / server.setSecureContext: the default certificate and the version floor. */
  get defaultOptions(): SecureContextOptions {
    return this.#contexts.defaultOptions
  }

  get settings(): LoadedTls {
    return this.#source
  }

  /** Builds the contexts of `next` (throws on what OpenSSL refuses, before anything changes), then swaps. */
  update(next: LoadedTls): boolean {
    if (sameMaterial(this.#source, next)) return false
    const contexts = build(next)
    this.#contexts = contexts
    this.#source = next
    return true
  }

  /** The context for a ClientHello's server name (lower-cased by the caller or not: done here). */
  contextFor(servername: string | undefined): SecureContext {
    const contexts = this.#contexts
    if (servername === undefined || servername === '') return contexts.fallback
    const name = servername.toLowerCase()
    const exact = contexts.exact.get(name)
    if (exact !== undefined) return exact
    const dot = name.indexOf('.')
    if (dot > 0) {
      const wild = contexts.wildcard.get(name.slice(dot + 1))
      if (wild !== undefined) return wild
    }
    return contexts.fallback
  }

  /** node:tls SNICallback. */
  readonly sniCallback = (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void => {
    cb(null, this.contextFor(servername))
  }
}

function optionsOf(cert: LoadedCertificate, tls: LoadedTls): SecureContextOptions {
  return {
    cert: cert.certPem,
    key: cert.keyPem,
    minVersion: tls.minVersion,
    ...(tls.clientAuth === undefined ? {} : { ca: tls.clientAuth.caPem }),
  }
}

function build(tls: LoadedTls): Contexts {
  const exact = new Map<string, SecureContext>()
  const wildcard = new Map<string, SecureContext>()
  let fallback: SecureContext | null = null
  let defaultOptions: SecureContextOptions | null = null
  for (const cert of tls.certificates) {
    const options = optionsOf(cert, tls)
    const context = createSecureContext(options)
    if (fallback === null) {
      fallback = context
      defaultOptions = options
    }
    // A name two certificates carry goes to the first (the order of the list is the order of preference).
    for (const name of cert.names) {
      if (name.startsWith('*.')) {
        if (!wildcard.has(name.slice(2))) wildcard.set(name.slice(2), context)
      } else if (!exact.has(name)) {
        exact.set(name, context)
      }
    }
  }
  if (fallback === null || defaultOptions === null) throw new Error('tls: no certificate') // the schema needs one
  return { exact, wildcard, fallback, defaultOptions }
}

function sameMaterial(a: LoadedTls, b: LoadedTls): boolean {
  if (a === b) return true
  if (a.minVersion !== b.minVersion || a.certificates.length !== b.certificates.length) return false
  if (a.clientAuth?.caPem !== b.clientAuth?.caPem) return false
  return a.certificates.every((c, i) => {
    const d = b.certificates[i]!
    return c.certPem === d.certPem && c.keyPem === d.keyPem
  })
}
