// An independent OAuth interop peer for chaingate, built from panva's `oidc-provider` (v8).
//
// Usage: node oidc-provider.mjs --config FILE
//   FILE: {"client_jwks": {"keys": [...]}, "secrets": {"app": "...", "gw-basic": "...", "gw-post": "..."},
//          "registration": {"initial_access_token": "..."}}   (registration: optional, see below)
//         optional "link_headers": {"ruri": URL, "duri": URL}: see "Response metadata links" below.
//         optional "mtls": {"cert_file", "key_file", "ca_file", "client_san_dns"}: see "Mutual TLS" below.
//         optional "dpop": {"require_nonce": bool}: B takes RFC 9449 DPoP proofs at its token
//           endpoint (oidc-provider's own feature and proof validation) and binds its tokens.
//
// Starts two authorization servers on 127.0.0.1 (ephemeral ports):
//   A  issues RFC 9068 JWT access tokens (client_credentials, client `app`, aud urn:a:gateway).
//   B  accepts A's tokens through three extension grants registered with
//      provider.registerGrantType():
//        urn:ietf:params:oauth:grant-type:token-exchange   (RFC 8693)
//        http://oauth.net/grant_type/chain                 (chain grant, oauth_token)
//        urn:ietf:params:oauth:grant-type:jwt-bearer       (RFC 7523, assertion issued by A)
//      and mints RFC 9068 JWT access tokens for resource urn:b:api with its own model.
// Client authentication, key handling and token signing are oidc-provider's own.
//
// Prints exactly one line of JSON to stdout once both listen:
//   {"a":{"issuer":"http://127.0.0.1:PA"},"b":{"issuer":"http://127.0.0.1:PB"}}
// (with "mtls", b also has "mtls_token_endpoint":"https://localhost:PM/token")
// then runs until SIGTERM/SIGINT. Everything else goes to stderr.

import { X509Certificate, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import * as http from 'node:http'
import * as https from 'node:https'

// oidc-provider prints its configuration notices with console.info (stdout); stdout carries the
// one JSON line only, so every console method but that line goes to stderr.
const writeStdout = (line) => process.stdout.write(`${line}\n`)
for (const method of ['log', 'info', 'debug']) console[method] = (...args) => console.error(...args)

const { default: Provider, errors } = await import('oidc-provider')
const jose = await import('jose')

function option(name) {
  const i = process.argv.indexOf(`--${name}`)
  return i !== -1 && i + 1 < process.argv.length ? process.argv[i + 1] : undefined
}

const configPath = option('config')
if (!configPath) {
  console.error('usage: node oidc-provider.mjs --config FILE')
  process.exit(2)
}
const config = JSON.parse(readFileSync(configPath, 'utf8'))
for (const name of ['app', 'gw-basic', 'gw-post']) {
  if (typeof config.secrets?.[name] !== 'string' || !config.secrets[name]) {
    throw new Error(`config: secrets.${name} missing`)
  }
}
if (!Array.isArray(config.client_jwks?.keys)) throw new Error('config: client_jwks.keys missing')

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
const CHAIN = 'http://oauth.net/grant_type/chain'
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer'
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token'
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt'
const A_RESOURCE = 'urn:a:gateway'
const A_SCOPE = 'a:read a:write'
const B_RESOURCE = 'urn:b:api'
const B_SCOPE = 'b:read b:write'
const SCOPE_MAP = { 'a:read': 'b:read', 'a:write': 'b:write' }
const B_TOKEN_TTL = 300 // seconds; never beyond the presented token's exp

async function signingKey(kid) {
  const { privateKey } = await jose.generateKeyPair('ES256', { extractable: true })
  return { ...(await jose.exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' }
}

// Listen first (port 0) so the issuer, which oidc-provider needs at construction, is known.
async function listen() {
  const server = http.createServer()
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  return { server, issuer: `http://127.0.0.1:${server.address().port}` }
}

// oidc-provider serves only the OpenID discovery path; RFC 8414 clients (chaingate, oauth4webapi
// with algorithm 'oauth2') ask for /.well-known/oauth-authorization-server, which this alias maps
// onto the same document (identical content: issuer, token_endpoint, jwks_uri, ...).
function attach(server, provider) {
  serveOn(server, provider)
  provider.on('server_error', (ctx, err) => console.error(`[${provider.issuer}] server_error`, err))
  provider.on('grant.error', (ctx, err) => console.error(`[${provider.issuer}] grant.error ${err.error}: ${err.error_description} (${err.error_detail ?? ''})`))
  provider.on('grant.success', (ctx) => console.error(`[${provider.issuer}] grant.success ${ctx.oidc.params.grant_type} client=${ctx.oidc.client?.clientId}`))
}

function serveOn(server, provider) {
  // Composed at the first request, so middleware added later with provider.use() takes part.
  let callback
  server.on('request', (req, res) => {
    callback ??= provider.callback()
    if (req.url === '/.well-known/oauth-authorization-server' || req.url.startsWith('/.well-known/oauth-authorization-server?')) {
      req.url = req.url.replace('/.well-known/oauth-authorization-server', '/.well-known/openid-configuration')
    }
    callback(req, res)
  })
}

// Settings common to both servers: nothing but the token endpoint, discovery and JWKS.
function common(keys) {
  return {
    jwks: { keys },
    clientDefaults: {
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      id_token_signed_response_alg: 'ES256',
    },
    enabledJWA: {
      idTokenSigningAlgValues: ['ES256'],
      clientAuthSigningAlgValues: ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'],
    },
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
    responseTypes: ['none'],
    cookies: { keys: ['interop-only-not-a-secret'] },
    findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
    // Token `extra` (e.g. RFC 8693 `act`) goes into B's JWTs as top-level claims.
    extraTokenClaims: async (ctx, token) => token.extra,
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: false },
      rpInitiatedLogout: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
    },
    pkce: { required: () => false },
  }
}

// ---------------------------------------------------------------- Domain A
const a = await listen()
const providerA = new Provider(a.issuer, {
  ...common([await signingKey('a-es256')]),
  clients: [{
    client_id: 'app',
    client_secret: config.secrets.app,
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: A_SCOPE,
  }],
  scopes: ['openid', ...A_SCOPE.split(' ')],
  ttl: { ClientCredentials: 600 },
  features: {
    ...common([]).features,
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => A_RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource) => {
        if (resource !== A_RESOURCE) throw new errors.InvalidTarget()
        return {
          scope: A_SCOPE,
          audience: A_RESOURCE,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }
      },
    },
  },
})
attach(a.server, providerA)

// ---------------------------------------------------------------- Registration (opt-in)
// With `"registration": {"initial_access_token": "..."}` in the config, B also offers RFC 7591
// registration (protected by that token), RFC 7592 management, and accepts the client
// intermediary metadata (`end_user_application`, `intermediaries`). Without it B is unchanged.
function party(value, what) {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new errors.InvalidClientMetadata(`${what} must be an object`)
  }
  if (typeof value.name !== 'string' || !value.name) {
    throw new errors.InvalidClientMetadata(`${what}.name must be a non-empty string`)
  }
  for (const key of ['uri', 'logo_uri', 'description']) {
    if (value[key] !== undefined && typeof value[key] !== 'string') {
      throw new errors.InvalidClientMetadata(`${what}.${key} must be a string`)
    }
  }
  if (value.contacts !== undefined && !(Array.isArray(value.contacts) && value.contacts.every((c) => typeof c === 'string'))) {
    throw new errors.InvalidClientMetadata(`${what}.contacts must be an array of strings`)
  }
}
const registrationOptions = {}
const registrationFeatures = {}
if (config.registration !== undefined) {
  const token = config.registration?.initial_access_token
  if (typeof token !== 'string' || !token) throw new Error('config: registration.initial_access_token missing')
  registrationFeatures.registration = { enabled: true, initialAccessToken: token }
  registrationFeatures.registrationManagement = { enabled: true }
  registrationOptions.extraClientMetadata = {
    properties: ['end_user_application', 'intermediaries'],
    validator(ctx, key, value) {
      if (value === undefined) return
      if (key === 'end_user_application') party(value, key)
      if (key === 'intermediaries') {
        if (!Array.isArray(value) || value.length > 20) {
          throw new errors.InvalidClientMetadata('intermediaries must be an array of at most 20 objects')
        }
        value.forEach((item, i) => party(item, `intermediaries[${i}]`))
      }
    },
  }
}

// ---------------------------------------------------------------- Mutual TLS (opt-in)
// With config.mtls, B also serves its endpoints over HTTPS on a second port, asking every client
// for a certificate (node verifies it against ca_file), and offers RFC 8705 §2.1 tls_client_auth
// to client `gw-mtls`, identified by the certificate's SAN DNS name (client_san_dns). Which
// certificate was presented and whether it verified is read from the TLS socket itself.
const mtlsClients = []
// ---------------------------------------------------------------- DPoP (RFC 9449)
// oidc-provider checks the proof (signature, typ, htm, htu, iat, nonce) in its own helper, the
// one its built-in grants call; B's extension grants call it too and bind the token to the key.
const dpopFeature = {}
let dpopValidate
if (config.dpop !== undefined) {
  ({ default: dpopValidate } = await import('oidc-provider/lib/helpers/validate_dpop.js'))
  const requireNonce = config.dpop?.require_nonce === true
  dpopFeature.dPoP = { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => requireNonce }
}

const mtlsFeature = {}
let mtlsServer
if (config.mtls) {
  const { cert_file: cert, key_file: key, ca_file: ca, client_san_dns: san } = config.mtls
  if (![cert, key, ca, san].every((v) => typeof v === 'string' && v)) {
    throw new Error('config: mtls needs cert_file, key_file, ca_file and client_san_dns')
  }
  mtlsServer = https.createServer({
    cert: readFileSync(cert), key: readFileSync(key), ca: readFileSync(ca),
    requestCert: true, rejectUnauthorized: false,
  })
  await new Promise((resolve, reject) => {
    mtlsServer.once('error', reject)
    mtlsServer.listen(0, '127.0.0.1', resolve)
  })
  const peerCertificate = (ctx) => {
    const raw = ctx.req.socket.getPeerCertificate?.()?.raw
    return raw ? new X509Certificate(raw) : undefined
  }
  mtlsFeature.mTLS = {
    enabled: true,
    tlsClientAuth: true,
    getCertificate: peerCertificate,
    certificateAuthorized: (ctx) => {
      const { authorized, authorizationError } = ctx.req.socket
      if (!authorized) console.error(`mTLS: client certificate not verified: ${authorizationError}`)
      return authorized === true
    },
    certificateSubjectMatches: (ctx, property, expected) => {
      if (property !== 'tls_client_auth_san_dns') return false
      const names = (peerCertificate(ctx)?.subjectAltName ?? '').split(', ')
      return names.includes(`DNS:${expected}`)
    },
  }
  mtlsClients.push({
    client_id: 'gw-mtls',
    grant_types: [TOKEN_EXCHANGE, CHAIN, JWT_BEARER],
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_san_dns: san,
    scope: 'b:read b:write',
  })
}

// ---------------------------------------------------------------- Domain B
const b = await listen()
const B_SERVER_INFO = {
  scope: B_SCOPE,
  audience: B_RESOURCE,
  accessTokenTTL: B_TOKEN_TTL,
  accessTokenFormat: 'jwt',
  jwt: { sign: { alg: 'ES256' } },
}
const B_GRANTS = [TOKEN_EXCHANGE, CHAIN, JWT_BEARER]
const providerB = new Provider(b.issuer, {
  ...common([await signingKey('b-es256')]),
  clients: [
    {
      client_id: 'gw-basic',
      client_secret: config.secrets['gw-basic'],
      grant_types: B_GRANTS,
      token_endpoint_auth_method: 'client_secret_basic',
      scope: B_SCOPE,
    },
    {
      client_id: 'gw-post',
      client_secret: config.secrets['gw-post'],
      grant_types: B_GRANTS,
      token_endpoint_auth_method: 'client_secret_post',
      scope: B_SCOPE,
    },
    {
      client_id: 'gw-pkjwt',
      grant_types: B_GRANTS,
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: config.client_jwks,
      scope: B_SCOPE,
    },
    ...mtlsClients,
  ],
  scopes: ['openid', ...B_SCOPE.split(' ')],
  ttl: { AccessToken: B_TOKEN_TTL },
  ...registrationOptions,
  ...(mtlsServer ? { clientAuthMethods: [...common([]).clientAuthMethods, 'tls_client_auth'] } : {}),
  features: {
    ...common([]).features,
    ...registrationFeatures,
    ...mtlsFeature,
    ...dpopFeature,
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => B_RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource) => {
        if (resource !== B_RESOURCE) throw new errors.InvalidTarget()
        return B_SERVER_INFO
      },
    },
  },
})
attach(b.server, providerB)
if (mtlsServer) serveOn(mtlsServer, providerB)

// A's keys, found the way any relying party would: A's metadata → jwks_uri.
let jwksA
async function aKeys() {
  if (!jwksA) {
    const response = await fetch(`${a.issuer}/.well-known/openid-configuration`)
    if (!response.ok) throw new Error(`A discovery: HTTP ${response.status}`)
    const metadata = await response.json()
    if (metadata.issuer !== a.issuer) throw new Error('A discovery: issuer mismatch')
    jwksA = jose.createRemoteJWKSet(new URL(metadata.jwks_uri))
  }
  return jwksA
}

// Verifies a token issued by A. `accessToken`: require RFC 9068 `typ: at+jwt` and aud urn:a:gateway.
// For a jwt-bearer assertion the audience may also be B itself (RFC 7523 §3: aud identifies B).
// Throws `Failure` (`.what` names the parameter) on any problem; callers pick the OAuth error code.
class Failure extends Error {
  constructor(message, what) {
    super(message)
    this.what = what
  }
}
async function verifyFromA(token, { accessToken, what }) {
  if (typeof token !== 'string' || !token) throw new Failure(`${what} missing`, what)
  let keys
  try {
    keys = await aKeys()
  } catch (err) {
    jwksA = undefined
    throw err // not the client's fault: server_error
  }
  const audiences = accessToken ? [A_RESOURCE] : [A_RESOURCE, b.issuer, `${b.issuer}/token`]
  try {
    const { payload, protectedHeader } = await jose.jwtVerify(token, keys, {
      issuer: a.issuer,
      audience: audiences,
      algorithms: ['ES256'],
      ...(accessToken ? { typ: 'at+jwt' } : {}),
      requiredClaims: ['exp', 'sub'],
    })
    return { payload, protectedHeader }
  } catch (err) {
    // A's JWKS unreachable or broken is not the client's fault: 500 server_error, retryable.
    if (!err.code || err.code === 'ERR_JWKS_TIMEOUT' || err.code === 'ERR_JOSE_GENERIC') throw err
    throw new Failure(`${what}: ${err.code} ${err.message}`, what)
  }
}

// Requested scope (A or B names) → B scope, limited to the client's and the presented token's.
function grantedScope(ctx, presented) {
  const { client } = ctx.oidc
  const allowed = new Set((client.scope ?? B_SCOPE).split(' '))
  const map = (s) => SCOPE_MAP[s] ?? s
  const fromToken = typeof presented.scope === 'string'
    ? new Set(presented.scope.split(' ').filter(Boolean).map(map))
    : undefined
  const requested = ctx.oidc.params.scope
    ? [...new Set(ctx.oidc.params.scope.split(' ').filter(Boolean).map(map))]
    : [...(fromToken ?? allowed)]
  for (const scope of requested) {
    if (!allowed.has(scope)) throw new errors.InvalidScope('requested scope is not allowed', scope)
  }
  const granted = requested.filter((s) => !fromToken || fromToken.has(s))
  if (granted.length === 0) throw new errors.InvalidScope('no requested scope is covered by the presented token')
  return granted.join(' ')
}

// Mints B's access token with oidc-provider's own AccessToken model (JWT format via the resource
// server config, signed with B's key), sub carried over, exp no later than the presented token's.
async function issue(ctx, presented, { extra } = {}) {
  const { client, provider } = ctx.oidc
  const scope = grantedScope(ctx, presented)
  const now = Math.floor(Date.now() / 1000)
  const remaining = presented.exp - now
  if (remaining <= 0) throw new Failure('presented token expired', 'subject_token')
  const token = new provider.AccessToken({
    client,
    accountId: presented.sub,
    gty: ctx.oidc.params.grant_type,
    scope,
    resourceServer: new provider.ResourceServer(B_RESOURCE, B_SERVER_INFO),
    expiresIn: Math.min(B_TOKEN_TTL, remaining),
    ...(extra ? { extra } : {}),
  })
  const proof = dpopValidate ? await dpopValidate(ctx) : undefined
  if (proof) {
    const unique = await provider.ReplayDetection.unique(client.clientId, proof.jti, now + 300)
    if (!unique) throw new errors.InvalidGrant('DPoP proof JWT Replay detected')
    token.setThumbprint('jkt', proof.thumbprint)
  }
  ctx.oidc.entity('AccessToken', token)
  const value = await token.save()
  return {
    access_token: value,
    token_type: token.tokenType ?? 'Bearer',
    expires_in: token.expiration,
    scope: token.scope,
  }
}

function single(ctx, name) {
  const value = ctx.oidc.params[name]
  if (Array.isArray(value)) throw new errors.InvalidRequest(`${name} must not be repeated`)
  return value
}

// RFC 8693 token exchange. Invalid subject/actor tokens → invalid_request (§2.2.2).
async function tokenExchange(ctx, next) {
  const subjectToken = single(ctx, 'subject_token')
  const subjectTokenType = single(ctx, 'subject_token_type')
  if (!subjectToken) throw new errors.InvalidRequest("missing required parameter 'subject_token'")
  if (!subjectTokenType) throw new errors.InvalidRequest("missing required parameter 'subject_token_type'")
  if (![ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE].includes(subjectTokenType)) {
    throw new errors.InvalidRequest('unsupported subject_token_type')
  }
  const requestedType = single(ctx, 'requested_token_type')
  if (requestedType !== undefined && ![ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE].includes(requestedType)) {
    throw new errors.InvalidRequest('unsupported requested_token_type')
  }
  for (const name of ['resource', 'audience']) {
    const raw = ctx.oidc.params[name]
    const values = raw === undefined ? [] : [raw].flat()
    if (values.some((v) => v !== B_RESOURCE)) {
      throw new errors.InvalidTarget(`${name} must be ${B_RESOURCE}`)
    }
  }
  const actorToken = single(ctx, 'actor_token')
  const actorTokenType = single(ctx, 'actor_token_type')
  if (actorToken && !actorTokenType) throw new errors.InvalidRequest("missing required parameter 'actor_token_type'")
  if (!actorToken && actorTokenType) throw new errors.InvalidRequest('actor_token_type without actor_token')

  let subject
  let actor
  try {
    ;({ payload: subject } = await verifyFromA(subjectToken, { accessToken: subjectTokenType === ACCESS_TOKEN_TYPE, what: 'subject_token' }))
    if (actorToken) {
      ;({ payload: actor } = await verifyFromA(actorToken, { accessToken: actorTokenType === ACCESS_TOKEN_TYPE, what: 'actor_token' }))
    }
  } catch (err) {
    if (err instanceof Failure) throw new errors.InvalidRequest(`${err.what} is invalid`, undefined, err.message)
    throw err
  }
  const extra = actor ? { act: { sub: actor.sub, ...(actor.act ? { act: actor.act } : {}) } } : undefined
  let body
  try {
    body = await issue(ctx, subject, { extra })
  } catch (err) {
    if (err instanceof Failure) throw new errors.InvalidRequest(`${err.what} is invalid`, undefined, err.message)
    throw err
  }
  ctx.body = { ...body, issued_token_type: ACCESS_TOKEN_TYPE }
  await next()
}

// Chain grant: oauth_token is the presented token, bare or as an Authorization value.
async function chainGrant(ctx, next) {
  const raw = single(ctx, 'oauth_token')
  if (!raw) throw new errors.InvalidRequest("missing required parameter 'oauth_token'")
  const token = raw.replace(/^Bearer\s+/i, '')
  try {
    const { payload } = await verifyFromA(token, { accessToken: true, what: 'oauth_token' })
    ctx.body = await issue(ctx, payload)
  } catch (err) {
    if (err instanceof Failure) throw new errors.InvalidGrant(err.message)
    throw err
  }
  await next()
}

// RFC 7523 JWT authorization grant; the assertion is a JWT issued by A (identity chaining).
async function jwtBearer(ctx, next) {
  const assertion = single(ctx, 'assertion')
  if (!assertion) throw new errors.InvalidRequest("missing required parameter 'assertion'")
  try {
    const { payload } = await verifyFromA(assertion, { accessToken: false, what: 'assertion' })
    ctx.body = await issue(ctx, payload)
  } catch (err) {
    if (err instanceof Failure) throw new errors.InvalidGrant(err.message)
    throw err
  }
  await next()
}

providerB.registerGrantType(
  TOKEN_EXCHANGE,
  tokenExchange,
  ['subject_token', 'subject_token_type', 'audience', 'resource', 'scope', 'requested_token_type', 'actor_token', 'actor_token_type'],
  ['audience', 'resource'],
)
providerB.registerGrantType(CHAIN, chainGrant, ['oauth_token', 'scope'])
providerB.registerGrantType(JWT_BEARER, jwtBearer, ['assertion', 'scope'])

// ---------------------------------------------------------------- Response metadata links
// Opt-in with config.link_headers = {"ruri": URL, "duri": URL}: B's successful token responses
// carry `Link: <ruri>; rel="ruri", <duri>; rel="duri"` (draft-sakimura-oauth-meta-05, RFC 8288),
// which oidc-provider does not emit itself. `{issuer}` in a value is replaced by B's issuer, so a
// test can name B's discovery document before knowing B's port. Either value may be left out.
if (config.link_headers) {
  const links = [['ruri', config.link_headers.ruri], ['duri', config.link_headers.duri]]
    .filter(([, url]) => typeof url === 'string' && url)
    .map(([rel, url]) => `<${url.replaceAll('{issuer}', b.issuer)}>; rel="${rel}"`)
  providerB.use(async (ctx, next) => {
    await next()
    if (links.length && ctx.method === 'POST' && ctx.path === '/token' && ctx.status === 200) {
      ctx.set('Link', links.join(', '))
    }
  })
}

const bLine = { issuer: b.issuer }
if (mtlsServer) bLine.mtls_token_endpoint = `https://localhost:${mtlsServer.address().port}/token`
writeStdout(JSON.stringify({ a: { issuer: a.issuer }, b: bLine }))

let stopping = false
function stop(signal) {
  if (stopping) return
  stopping = true
  console.error(`oidc-provider peer: ${signal}, closing`)
  const servers = [a.server, b.server, ...(mtlsServer ? [mtlsServer] : [])]
  let open = servers.length
  for (const server of servers) {
    server.close(() => {
      open -= 1
      if (open === 0) process.exit(0)
    })
    server.closeAllConnections()
  }
  setTimeout(() => process.exit(0), 2000).unref()
}
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))
