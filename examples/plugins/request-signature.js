// Example plugin (README "Plugins"): a request-signing check, in the spirit of APISIX's and Kong's hmac-auth.
//
// The client signs what identifies the request, with a secret it shares with the gateway:
//
//   string to sign = METHOD "\n" path "\n" query "\n" timestamp
//   x-signature    = hex(HMAC-SHA256(secret, string to sign))
//   x-timestamp    = Unix time in seconds
//
// `path` is the canonical path (README "The canonical path"); `query` is the query's parameters sorted by
// name (URLSearchParams.sort(), then toString()), so that the client and the gateway agree on its spelling.
// The body is not signed: a plugin does not see it. A request with no or a malformed signature, a signature
// that does not match (compared in constant time) or a timestamp more than maxSkew seconds away from the
// gateway's clock gets 401 and never reaches the upstream. The secret can come from the environment:
// `secret: ${SIGNING_SECRET}` (README "Configuration": ${VAR} substitution).
import { createHmac, timingSafeEqual } from 'node:crypto'

export const configSchema = {
  type: 'object',
  properties: {
    secret: { type: 'string', minLength: 16, description: 'Shared secret, at least 16 characters.' },
    header: { type: 'string', default: 'x-signature' },
    timestampHeader: { type: 'string', default: 'x-timestamp' },
    maxSkew: { type: 'integer', minimum: 1, maximum: 3600, default: 300, description: 'Seconds a timestamp may differ from now.' },
  },
  required: ['secret'],
  additionalProperties: false,
}

const HEX64 = /^[0-9a-f]{64}$/
const DIGITS = /^[0-9]{1,12}$/

/** The string a client signs; exported for clients and tests written in JavaScript. */
export function stringToSign(method, path, query, timestamp) {
  const params = new URLSearchParams(query)
  params.sort()
  return `${method.toUpperCase()}\n${path}\n${params.toString()}\n${timestamp}`
}

export function sign(secret, method, path, query, timestamp) {
  return createHmac('sha256', secret).update(stringToSign(method, path, query, timestamp)).digest('hex')
}

/** @param {import('../../src/policy/plugins/plugin-api.ts').RequestContext} ctx */
export function onRequest(ctx) {
  const { secret, header = 'x-signature', timestampHeader = 'x-timestamp', maxSkew = 300 } = ctx.config
  const signature = ctx.headers[header.toLowerCase()]
  const timestamp = ctx.headers[timestampHeader.toLowerCase()]
  if (typeof signature !== 'string' || !HEX64.test(signature.toLowerCase()) || typeof timestamp !== 'string' || !DIGITS.test(timestamp)) {
    return refuse(ctx, `sign the request: ${header} (hex HMAC-SHA256) and ${timestampHeader} (Unix seconds)`)
  }
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > maxSkew) return refuse(ctx, `${timestampHeader} is more than ${maxSkew} s away from the gateway's clock`)
  const expected = Buffer.from(sign(secret, ctx.method, ctx.path, ctx.query, timestamp), 'hex')
  if (!timingSafeEqual(expected, Buffer.from(signature.toLowerCase(), 'hex'))) return refuse(ctx, 'the signature does not match')
}

function refuse(ctx, message) {
  ctx.respond(401, { 'content-type': 'application/json' }, JSON.stringify({ code: 'SIGNATURE_INVALID', message }))
}
