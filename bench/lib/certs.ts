// The certificate of the TLS scenarios (tls, h2): one self-signed EC certificate for 127.0.0.1 and
// localhost, made with openssl in the bench's temporary directory when a scenario first needs it. Load
// generators do not verify it (wrk and h2load never do; probes are told not to).
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'

export interface BenchCertificate {
  readonly cert: string
  readonly key: string
}

export function benchCertificate(dir: string): BenchCertificate {
  const cert = join(dir, 'bench-cert.pem')
  const key = join(dir, 'bench-key.pem')
  if (!existsSync(cert)) {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key,
      '-out', cert, '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'pipe' })
  }
  return { cert, key }
}
