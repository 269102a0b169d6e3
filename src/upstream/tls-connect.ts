// TLS towards https:// targets (README "Upstreams over HTTPS"): the options undici's connector hands to
// tls.connect, made once per target pool or probe client from the upstream's loaded `tls:`, so traffic and
// active health probes verify the same CA, present the same client certificate and send the same SNI.
//
// Without `tls:` an https:// target is verified against Node's bundled CAs. A certificate that does not
// verify fails the connect (rejectUnauthorized stays true); nothing ever retries in plaintext.
import type { ConnectionOptions } from 'node:tls'
import type { LoadedUpstreamTls } from '../config/schema.js'

export type TlsConnectOptions = Pick<ConnectionOptions, 'ca' | 'cert' | 'key' | 'servername'>

/** The connect options of an upstream's `tls:` (empty without it). */
export function tlsConnectOptions(tls: LoadedUpstreamTls | null | undefined): TlsConnectOptions {
  const out: TlsConnectOptions = {}
  if (tls === null || tls === undefined) return out
  if (tls.caPem !== null) out.ca = tls.caPem
  if (tls.certPem !== null && tls.keyPem !== null) {
    out.cert = tls.certPem
    out.key = tls.keyPem
  }
  // node:tls both sends it in SNI and checks the target's certificate against it (checkServerIdentity).
  if (tls.servername !== null) out.servername = tls.servername
  return out
}
