// Example plugin (README "Plugins"): a header-based tenant router.
//
// Every request must name its tenant in a header (x-tenant by default). A missing or malformed header is
// answered 400 and an unknown tenant 403, by the gateway, before the upstream is called. A known tenant's
// request goes upstream with the tenant's shard in a header (x-tenant-shard by default): the upstream, or a
// router behind it, sends it to that shard. The response tells the client which tenant answered.
//
//   plugins:
//     - module: ../examples/plugins/tenant-router.js
//       config: { tenants: { acme: { shard: eu-1 }, globex: { shard: us-2 } } }

/** @type {import('../../src/policy/plugins/plugin-api.ts').PluginModule['configSchema']} */
export const configSchema = {
  type: 'object',
  properties: {
    header: { type: 'string', pattern: '^[A-Za-z0-9-]+$', default: 'x-tenant', description: 'Request header naming the tenant.' },
    forwardAs: { type: 'string', pattern: '^[A-Za-z0-9-]+$', default: 'x-tenant-shard', description: 'Header the upstream gets with the shard.' },
    tenants: {
      type: 'object',
      minProperties: 1,
      propertyNames: { pattern: '^[a-z0-9][a-z0-9-]{0,62}$' },
      additionalProperties: {
        type: 'object',
        properties: { shard: { type: 'string', minLength: 1 } },
        required: ['shard'],
        additionalProperties: false,
      },
    },
  },
  required: ['tenants'],
  additionalProperties: false,
}

const TENANT = /^[a-z0-9][a-z0-9-]{0,62}$/

/** @param {import('../../src/policy/plugins/plugin-api.ts').RequestContext} ctx */
export function onRequest(ctx) {
  const header = String(ctx.config.header ?? 'x-tenant').toLowerCase()
  const raw = ctx.headers[header]
  const tenant = typeof raw === 'string' ? raw.trim().toLowerCase() : ''
  if (tenant === '' || !TENANT.test(tenant)) {
    return answer(ctx, 400, 'TENANT_REQUIRED', `the ${header} header must name a tenant`)
  }
  const entry = Object.hasOwn(ctx.config.tenants, tenant) ? ctx.config.tenants[tenant] : undefined
  if (entry === undefined) return answer(ctx, 403, 'TENANT_UNKNOWN', 'this tenant is not served here')
  ctx.setHeader(header, tenant) // normalised: the upstream sees one spelling
  ctx.setHeader(String(ctx.config.forwardAs ?? 'x-tenant-shard'), entry.shard)
}

/** @param {import('../../src/policy/plugins/plugin-api.ts').ResponseContext} ctx */
export function onResponse(ctx) {
  const raw = ctx.headers[String(ctx.config.header ?? 'x-tenant').toLowerCase()]
  if (typeof raw === 'string') ctx.setHeader('x-served-tenant', raw.trim().toLowerCase())
}

function answer(ctx, status, code, message) {
  ctx.respond(status, { 'content-type': 'application/json' }, JSON.stringify({ code, message }))
}
