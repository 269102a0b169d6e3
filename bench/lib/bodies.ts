// What the upstream serves. nginx and the node:http upstream serve the same bytes.

export const SMALL_BODY = 'ok'
/** GET /500 answers status 500 with this: as long as SMALL_BODY, so a failure moves the same bytes as a success. */
export const FAILURE_PATH = '/500'
export const FAILURE_BODY = 'no'
export const KIB4_BYTES = 4 * 1024
export const MIB1_BYTES = 1024 * 1024

/** A body of n bytes: printable, so a person can look at it with curl. */
export function fillerBody(bytes: number): Buffer {
  return Buffer.alloc(bytes, 'tollgate-bench\n')
}
