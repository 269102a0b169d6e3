// gRPC status codes (grpc/grpc doc/statuscodes.md) and the two mappings the gateway needs: the status of a
// response the gateway makes itself on a gRPC route (SPEC §11: 429 -> RESOURCE_EXHAUSTED, 503 ->
// UNAVAILABLE...), and the HTTP status a gRPC status stands for when passive health judges a target (the
// table Envoy uses for outlier detection on gRPC: UNAVAILABLE counts like a 503, INTERNAL like a 500).

export const GrpcStatus = {
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, ABORTED: 10, OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, DATA_LOSS: 15, UNAUTHENTICATED: 16,
} as const

/** The `failOn` words for gRPC statuses (README "gRPC"): `grpc-` + the code's name in kebab case. */
export const GRPC_FAIL_ON: Readonly<Record<string, number>> = Object.freeze({
  'grpc-unknown': GrpcStatus.UNKNOWN,
  'grpc-deadline-exceeded': GrpcStatus.DEADLINE_EXCEEDED,
  'grpc-resource-exhausted': GrpcStatus.RESOURCE_EXHAUSTED,
  'grpc-unimplemented': GrpcStatus.UNIMPLEMENTED,
  'grpc-internal': GrpcStatus.INTERNAL,
  'grpc-unavailable': GrpcStatus.UNAVAILABLE,
  'grpc-data-loss': GrpcStatus.DATA_LOSS,
})

/**
 * The gRPC status of a gateway-made response with HTTP status `status`. SPEC §11 names 429, 401, 403, 503
 * and 504, others INTERNAL; we add 404 -> UNIMPLEMENTED, which is what gRPC's own HTTP-to-gRPC table says
 * (a client calling a method no route serves), and 413 -> RESOURCE_EXHAUSTED (a message over the size limit).
 */
export function grpcStatusOfRefusal(status: number): number {
  switch (status) {
    case 429: case 413: return GrpcStatus.RESOURCE_EXHAUSTED
    case 401: return GrpcStatus.UNAUTHENTICATED
    case 403: return GrpcStatus.PERMISSION_DENIED
    case 404: return GrpcStatus.UNIMPLEMENTED
    case 503: case 502: return GrpcStatus.UNAVAILABLE
    case 504: return GrpcStatus.DEADLINE_EXCEEDED
    default: return GrpcStatus.INTERNAL
  }
}

/** The HTTP status a gRPC status stands for (passive health: >= 500 is the target's failure). */
export function httpStatusOfGrpc(code: number): number {
  switch (code) {
    case GrpcStatus.OK: return 200
    case GrpcStatus.CANCELLED: return 499
    case GrpcStatus.INVALID_ARGUMENT: case GrpcStatus.FAILED_PRECONDITION: case GrpcStatus.OUT_OF_RANGE: return 400
    case GrpcStatus.DEADLINE_EXCEEDED: return 504
    case GrpcStatus.NOT_FOUND: return 404
    case GrpcStatus.ALREADY_EXISTS: case GrpcStatus.ABORTED: return 409
    case GrpcStatus.PERMISSION_DENIED: return 403
    case GrpcStatus.RESOURCE_EXHAUSTED: return 429
    case GrpcStatus.UNIMPLEMENTED: return 501
    case GrpcStatus.UNAVAILABLE: return 503
    case GrpcStatus.UNAUTHENTICATED: return 401
    default: return 500 // UNKNOWN, INTERNAL, DATA_LOSS, and codes past 16
  }
}

/** `grpc-status` header value -> code; -1 when absent or not a number. */
export function parseGrpcStatus(value: string | Buffer | undefined): number {
  if (value === undefined) return -1
  const text = typeof value === 'string' ? value : value.toString('latin1')
  const code = Number(text)
  return text !== '' && Number.isInteger(code) && code >= 0 ? code : -1
}

/**
 * What undici hands onComplete as trailers: an object over HTTP/2 (Node's http2 headers object), raw
 * [name, value, ...] pairs (buffers or strings) over HTTP/1.1, or null. Its declared type says string[].
 */
export type UndiciTrailers = string[] | null

/** The trailers as [lower-case name, value] pairs, pseudo-headers left out. */
export function trailerPairs(trailers: UndiciTrailers): Array<[string, string]> {
  const out: Array<[string, string]> = []
  if (trailers === null || trailers === undefined) return out
  if (Array.isArray(trailers)) {
    const raw = trailers as ReadonlyArray<string | Buffer>
    for (let i = 0; i + 1 < raw.length; i += 2) out.push([String(raw[i]).toLowerCase(), String(raw[i + 1])])
    return out
  }
  for (const [name, value] of Object.entries(trailers as Record<string, string | string[] | undefined>)) {
    if (value === undefined || name.startsWith(':')) continue
    if (Array.isArray(value)) for (const v of value) out.push([name, v])
    else out.push([name, value])
  }
  return out
}

/** grpc-status in the trailers, else `otherwise`. */
export function grpcStatusOfTrailers(trailers: UndiciTrailers, otherwise: number): number {
  for (const [name, value] of trailerPairs(trailers)) if (name === 'grpc-status') return parseGrpcStatus(value)
  return otherwise
}

/** grpc-status among raw response headers (undici's [name, value, ...] buffers), else `otherwise`. */
export function grpcStatusOfHeaders(raw: readonly Buffer[], otherwise: number): number {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    // 'grpc-status' is 11 bytes: compare only names of that length.
    if (name.length === 11 && name.toString('latin1').toLowerCase() === 'grpc-status') return parseGrpcStatus(raw[i + 1])
  }
  return otherwise
}
