// `host:port` as written in `listen`, `admin` and target addresses: the port is after the last colon, and
// an IPv6 host is in brackets (`[::1]:8080`).

/** Splits at the last colon; the host keeps its brackets. */
export function splitHostPort(address: string): { readonly host: string; readonly port: string } {
  const i = address.lastIndexOf(':')
  return { host: address.slice(0, i), port: address.slice(i + 1) }
}

/** For listen(): the host without brackets ('' -> 0.0.0.0) and the port as a number. */
export function listenAddress(address: string): { host: string; port: number } {
  const { host, port } = splitHostPort(address)
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
  return { host: bare === '' ? '0.0.0.0' : bare, port: Number(port) }
}

/** A listen error as one line that says which listener: `proxy listener 0.0.0.0:8080 (listen): address already in use`. */
export function listenError(err: unknown, which: string, setting: string, host: string, port: number): Error {
  const code = (err as { code?: string }).code
  const why = code === 'EADDRINUSE' ? 'address already in use'
    : code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)'
      : code === 'EADDRNOTAVAIL' ? 'no such local address'
        : (err as Error).message
  const shown = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
  return new Error(`${which} listener ${shown} (${setting}): ${why}`, { cause: err })
}
