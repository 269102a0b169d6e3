// The verified client certificate of a connection (README "TLS", client certificates): its subject, as the
// limiter key `client-cert` reads it. Worked out once per connection, on the first request that asks, and
// kept on the socket: later requests on the connection read one property.
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'

const kSubject = Symbol('tollgate.clientCertSubject')

type WithSubject = Socket & { [kSubject]?: string | null }

/**
 * The subject of the client certificate the handshake verified against `tls.clientAuth.ca`, as
 * `CN=...,O=...` (the certificate's own order, characters outside printable ASCII percent-encoded); null on a plaintext connection, without a certificate, or
 * with one that did not verify (`required: false` lets such clients in).
 */
export function clientCertSubject(socket: Socket | null): string | null {
  if (socket === null) return null
  const s = socket as WithSubject
  let subject = s[kSubject]
  if (subject === undefined) {
    const tls = socket as TLSSocket
    const raw = tls.encrypted === true && tls.authorized ? tls.getPeerX509Certificate()?.subject ?? null : null
    // One line, and usable as a header value (route.forwardClientCert): bytes outside printable ASCII percent-encoded.
    subject = raw === null ? null : raw.split('\n').join(',').replace(/[^\x20-\x7e]+/g, (c) => encodeURIComponent(c))
    s[kSubject] = subject
  }
  return subject
}
