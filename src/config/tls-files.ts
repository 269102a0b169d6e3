// The files of `tls:` (README "TLS") and of an upstream's `tls:` (README "Upstreams over HTTPS"): read at load, next to the YAML, so that a missing file, PEM garbage,
// a key that does not belong to its certificate or an expired certificate is a config error located at its
// key (`routes.yaml:4:13 tls.certificates[0].key: ...`) like any other, `validate` reports it, and a reload
// that brings one is rejected while the certificates in force keep serving. Relative paths are read from the
// config file's directory, so a config and its certificates can move together.
//
// An expired certificate is an error: every client would refuse the handshake, and on a reload the one in
// force keeps serving. A certificate not valid yet is a warning: openssl stamps notBefore with the second it
// signs, so a host whose clock is a little behind the signer's would otherwise refuse a fresh certificate
// it will be able to serve moments later.
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { createSecureContext } from 'node:tls'
import type { ConfigIssue } from '../errors.js'
import type { Locate } from './check.js'
import type { LoadedCertificate, LoadedTls, LoadedUpstreamTls } from './schema.js'
import { formatPath, type PathSegment } from './validate-value.js'

/** `tls:` as the schema decoded it: paths, not read yet. */
export interface TlsPaths {
  readonly certificates: ReadonlyArray<{ readonly cert: string; readonly key: string }>
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3'
  readonly clientAuth?: { readonly ca: string; readonly required: boolean }
}

/** Reads and checks every file of `tls`; `configFile` is the YAML file (relative paths start from its directory). */
export function loadTlsFiles(tls: TlsPaths, configFile: string, locate: Locate, now = Date.now()): { tls: LoadedTls | null; issues: ConfigIssue[] } {
  const issues: ConfigIssue[] = []
  const report = (severity: ConfigIssue['severity'], path: readonly PathSegment[], message: string): void => {
    issues.push({ where: locate(path), path: formatPath(path), message, severity })
  }
  const base = dirname(resolve(configFile))
  const certificates: LoadedCertificate[] = []
  tls.certificates.forEach((entry, i) => {
    const at = (field: string): PathSegment[] => ['tls', 'certificates', i, field]
    const cert = resolve(base, entry.cert)
    const key = resolve(base, entry.key)
    const certPem = readPem(cert, at('cert'), report)
    const keyPem = readPem(key, at('key'), report)
    const x509 = certPem === null ? null : parseCertificate(certPem, cert, at('cert'), report)
    const keyObject = keyPem === null ? null : parseKey(keyPem, key, at('key'), report)
    if (x509 === null || keyObject === null || certPem === null || keyPem === null) return
    if (!x509.checkPrivateKey(keyObject)) {
      report('error', at('key'), `${key} is not the key of the certificate ${cert} (${oneLine(x509.subject)}); name the key it was issued for`)
      return
    }
    if (!checkValidity(x509, cert, now, at('cert'), report)) return
    try {
      createSecureContext({ cert: certPem, key: keyPem }) // what the listener will do: anything else OpenSSL refuses
    } catch (err) {
      report('error', at('cert'), `${cert}: OpenSSL refuses the certificate and key: ${firstLine(err)}`)
      return
    }
    certificates.push({ cert, key, certPem, keyPem, names: namesOf(x509), subject: oneLine(x509.subject), validTo: new Date(x509.validTo).toISOString() })
  })
  let clientAuth: LoadedTls['clientAuth']
  if (tls.clientAuth !== undefined) {
    const path: PathSegment[] = ['tls', 'clientAuth', 'ca']
    const ca = resolve(base, tls.clientAuth.ca)
    const caPem = readPem(ca, path, report)
    if (caPem !== null && parseCertificate(caPem, ca, path, report) !== null) {
      try {
        createSecureContext({ ca: caPem })
        clientAuth = { ca, caPem, required: tls.clientAuth.required }
      } catch (err) {
        report('error', path, `${ca}: OpenSSL refuses the CA certificates: ${firstLine(err)}`)
      }
    }
  }
  if (issues.some((i) => i.severity === 'error')) return { tls: null, issues }
  return { tls: { certificates, minVersion: tls.minVersion, ...(clientAuth === undefined ? {} : { clientAuth }) }, issues }
}

/** An upstream's `tls:` as the schema decoded it: paths, not read yet. */
export interface UpstreamTlsPaths {
  readonly ca?: string
  readonly cert?: string
  readonly key?: string
  readonly servername?: string
}

/**
 * Reads and checks the files of `upstreams.<name>.tls` (README "Upstreams over HTTPS"): a CA file that holds
 * certificates OpenSSL accepts, and a client certificate with its own key (both or neither).
 */
export function loadUpstreamTlsFiles(
  name: string, tls: UpstreamTlsPaths, configFile: string, locate: Locate, now = Date.now(),
): { tls: LoadedUpstreamTls | null; issues: ConfigIssue[] } {
  const issues: ConfigIssue[] = []
  const report = (severity: ConfigIssue['severity'], path: readonly PathSegment[], message: string): void => {
    issues.push({ where: locate(path), path: formatPath(path), message, severity })
  }
  const at = (field: string): PathSegment[] => ['upstreams', name, 'tls', field]
  const base = dirname(resolve(configFile))
  let ca: string | null = null
  let caPem: string | null = null
  if (tls.ca !== undefined) {
    ca = resolve(base, tls.ca)
    caPem = readPem(ca, at('ca'), report)
    if (caPem !== null && parseCertificate(caPem, ca, at('ca'), report) !== null) {
      try {
        createSecureContext({ ca: caPem })
      } catch (err) {
        report('error', at('ca'), `${ca}: OpenSSL refuses the CA certificates: ${firstLine(err)}`)
      }
    }
  }
  let cert: string | null = null
  let key: string | null = null
  let certPem: string | null = null
  let keyPem: string | null = null
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    const missing = tls.cert === undefined ? 'cert' : 'key'
    report('error', at(tls.cert === undefined ? 'key' : 'cert'), `a client certificate needs both cert and key; add ${missing}`)
  } else if (tls.cert !== undefined && tls.key !== undefined) {
    cert = resolve(base, tls.cert)
    key = resolve(base, tls.key)
    certPem = readPem(cert, at('cert'), report)
    keyPem = readPem(key, at('key'), report)
    const x509 = certPem === null ? null : parseCertificate(certPem, cert, at('cert'), report)
    const keyObject = keyPem === null ? null : parseKey(keyPem, key, at('key'), report)
    if (x509 !== null && keyObject !== null) {
      if (!x509.checkPrivateKey(keyObject)) {
        report('error', at('key'), `${key} is not the key of the certificate ${cert} (${oneLine(x509.subject)}); name the key it was issued for`)
      } else {
        checkValidity(x509, cert, now, at('cert'), report)
      }
    }
  }
  if (issues.some((i) => i.severity === 'error')) return { tls: null, issues }
  return { tls: { ca, caPem, cert, certPem, key, keyPem, servername: tls.servername ?? null }, issues }
}

type Report = (severity: ConfigIssue['severity'], path: readonly PathSegment[], message: string) => void

function readPem(file: string, path: readonly PathSegment[], report: Report): string | null {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    const code = err instanceof Error && 'code' in err ? err.code : undefined
    const reason = code === 'ENOENT' ? 'no such file'
      : code === 'EISDIR' ? 'it is a directory'
        : code === 'EACCES' ? 'permission denied'
          : firstLine(err)
    report('error', path, `cannot read ${file}: ${reason}`)
    return null
  }
}

function parseCertificate(pem: string, file: string, path: readonly PathSegment[], report: Report): X509Certificate | null {
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    report('error', path, `${file} holds no PEM certificate (no "-----BEGIN CERTIFICATE-----" line)`)
    return null
  }
  try {
    return new X509Certificate(pem)
  } catch (err) {
    report('error', path, `${file} holds no readable PEM certificate: ${firstLine(err)}`)
    return null
  }
}

function parseKey(pem: string, file: string, path: readonly PathSegment[], report: Report): KeyObject | null {
  try {
    return createPrivateKey(pem)
  } catch (err) {
    const encrypted = pem.includes('ENCRYPTED')
    report('error', path, encrypted
      ? `${file} is an encrypted private key; a passphrase is not supported: write it unencrypted (openssl pkey -in ${file} -out <new file>) and restrict the file's permissions`
      : `${file} holds no readable PEM private key: ${firstLine(err)}`)
    return null
  }
}

function checkValidity(x509: X509Certificate, file: string, now: number, path: readonly PathSegment[], report: Report): boolean {
  const notAfter = Date.parse(x509.validTo)
  const notBefore = Date.parse(x509.validFrom)
  if (notAfter < now) {
    report('error', path, `${file} expired on ${new Date(notAfter).toISOString()} (${oneLine(x509.subject)}); clients would refuse it`)
    return false
  }
  if (notBefore > now) {
    report('warning', path, `${file} is not valid before ${new Date(notBefore).toISOString()}; clients refuse it until then`)
  }
  return true
}

/** The DNS names a certificate serves: its subjectAltName DNS entries, else its subject CN. Lower case. */
export function namesOf(x509: X509Certificate): string[] {
  const names: string[] = []
  for (const entry of (x509.subjectAltName ?? '').split(', ')) {
    if (entry.startsWith('DNS:')) names.push(entry.slice(4).toLowerCase())
  }
  if (names.length === 0) {
    const cn = /^CN=(.+)$/m.exec(x509.subject)?.[1]
    if (cn !== undefined) names.push(cn.toLowerCase())
  }
  return names
}

function oneLine(subject: string): string {
  return subject.split('\n').join(', ')
}

function firstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  return message.split('\n')[0] ?? message
}
