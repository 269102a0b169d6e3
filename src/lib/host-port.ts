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
