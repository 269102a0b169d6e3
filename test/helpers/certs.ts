// Certificates for the TLS tests, made with openssl at test time in a directory of the caller's: a CA, and
// leaf certificates it signs for the DNS names asked (EC P-256 keys: fast to make), plus a client certificate
// for mTLS. Nothing is checked in.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface CertFiles {
  readonly cert: string
  readonly key: string
}

export class TestCa {
  readonly dir: string
  readonly name: string
  readonly cert: string
  readonly key: string
  #serial = 1

  constructor(dir: string, name = 'ca') {
    this.dir = dir
    this.name = name
    this.cert = join(dir, `${name}.pem`)
    this.key = join(dir, `${name}-key.pem`)
    this.#run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', this.key, '-out', this.cert, '-days', '2', '-subj', `/CN=tollgate test ${name}`])
  }

  /** A server certificate for `names` (subjectAltName DNS entries; `*.x` allowed), subject CN `cn`. */
  server(file: string, cn: string, names: readonly string[]): CertFiles {
    const ext = names.length === 0 ? 'extendedKeyUsage=serverAuth\n'
      : `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\nextendedKeyUsage=serverAuth\n`
    return this.#leaf(file, cn, ext)
  }

  /** A client certificate (extendedKeyUsage clientAuth), subject CN `cn`. */
  client(file: string, cn: string): CertFiles {
    return this.#leaf(file, cn, 'extendedKeyUsage=clientAuth\n')
  }

  #leaf(file: string, cn: string, ext: string): CertFiles {
    const cert = join(this.dir, `${file}.pem`)
    const key = join(this.dir, `${file}-key.pem`)
    const csr = join(this.dir, `${file}.csr`)
    const extFile = join(this.dir, `${file}.ext`)
    writeFileSync(extFile, ext)
    this.#run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${cn}`])
    this.#run(['x509', '-req', '-in', csr, '-CA', this.cert, '-CAkey', this.key, '-set_serial', String(this.#serial++),
      '-out', cert, '-days', '2', '-extfile', extFile])
    return { cert, key }
  }

  #run(args: string[]): void {
    execFileSync('openssl', args, { cwd: this.dir, stdio: 'pipe' })
  }
}

/** The certificates of the upstream-TLS tests (upstream-tls, websocket-tls), in a new temporary directory. */
export interface UpstreamTlsCerts {
  readonly dir: string
  /** Signed the upstream's certificate. */
  readonly ca: TestCa
  /** Signed nothing the upstream has: a CA the gateway must not trust for it. */
  readonly otherCa: TestCa
  /** Signed the gateway's client certificate. */
  readonly clientCa: TestCa
  /** The upstream's, for upstream.test. */
  readonly server: CertFiles
  /** The gateway's, CN "tollgate gateway". */
  readonly client: CertFiles
}

/** Makes UpstreamTlsCerts under a new directory of tmpdir() named `prefix`…; the caller removes `dir`. */
export function makeUpstreamTlsCerts(prefix: string): UpstreamTlsCerts {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  const ca = new TestCa(dir, 'up-ca')
  const clientCa = new TestCa(dir, 'client-ca')
  return {
    dir, ca, otherCa: new TestCa(dir, 'other-ca'), clientCa,
    server: ca.server('upstream', 'upstream.test', ['upstream.test']),
    client: clientCa.client('gateway-client', 'tollgate gateway'),
  }
}
