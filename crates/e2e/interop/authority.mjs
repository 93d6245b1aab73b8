// Interop check of the chaingate authority with oauth4webapi (independent OAuth client code).
//
// Usage: node authority.mjs --issuer URL --client-id ID --client-secret SECRET
//          [--audience AUD]                       audience requested in the token exchange
//          [--subject-issuer URL --subject-client-id ID --subject-client-secret SECRET]
//          [--subject-audience AUD]               `aud` of the subject token (default: none checked)
// Every option can also come from the environment: --client-id ↔ AUTHORITY_CLIENT_ID, etc.
// The subject token is obtained with client_credentials at --subject-issuer (default: --issuer),
// then exchanged (RFC 8693) at --issuer. Exits non-zero on the first failed check.

import * as oauth from 'oauth4webapi'

function option(name) {
  const i = process.argv.indexOf(`--${name}`)
  if (i !== -1 && i + 1 < process.argv.length) return process.argv[i + 1]
  return process.env[`AUTHORITY_${name.toUpperCase().replaceAll('-', '_')}`]
}

function required(name) {
  const value = option(name)
  if (!value) throw new Error(`missing --${name}`)
  return value
}

let checks = 0
function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`)
  checks += 1
  console.log(`ok ${checks} - ${what}`)
}

const insecure = (url) => new URL(url).protocol === 'http:'
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token'
const CHAIN = 'http://oauth.net/grant_type/chain'

async function discover(issuer) {
  const url = new URL(issuer)
  const response = await oauth.discoveryRequest(url, {
    algorithm: 'oauth2',
    [oauth.allowInsecureRequests]: insecure(issuer),
  })
  const as = await oauth.processDiscoveryResponse(url, response)
  check(as.issuer === issuer, `RFC 8414 discovery at ${issuer}: issuer matches`)
  check(typeof as.token_endpoint === 'string', 'metadata has token_endpoint')
  check(typeof as.jwks_uri === 'string', 'metadata has jwks_uri')
  return as
}

async function validateAccessToken(as, token, audience, label) {
  const request = new Request('https://resource.example/', {
    headers: { authorization: `Bearer ${token}` },
  })
  const claims = await oauth.validateJwtAccessToken(as, request, audience, {
    [oauth.allowInsecureRequests]: insecure(as.issuer),
  })
  check(claims.iss === as.issuer, `${label}: RFC 9068 validation (typ, signature via jwks_uri, iss, exp, aud=${audience})`)
  return claims
}

async function main() {
  const issuer = required('issuer')
  const client = { client_id: required('client-id') }
  const auth = oauth.ClientSecretBasic(required('client-secret'))
  const subjectIssuer = option('subject-issuer') ?? issuer
  const subjectClient = { client_id: option('subject-client-id') ?? client.client_id }
  const subjectAuth = oauth.ClientSecretBasic(option('subject-client-secret') ?? required('client-secret'))
  const audience = option('audience')
  const subjectAudience = option('subject-audience')
  const httpOptions = (url) => ({ [oauth.allowInsecureRequests]: insecure(url) })

  const as = await discover(issuer)
  check(as.grant_types_supported?.includes('client_credentials'), 'grant_types_supported has client_credentials')
  check(as.grant_types_supported?.includes(TOKEN_EXCHANGE), 'grant_types_supported has token-exchange')
  check(as.grant_types_supported?.includes(CHAIN), 'grant_types_supported has the chain grant')
  check(!as.token_endpoint_auth_signing_alg_values_supported?.includes('none'), 'no "none" signing alg advertised')
  const subjectAs = subjectIssuer === issuer ? as : await discover(subjectIssuer)

  // client_credentials (RFC 6749 §4.4) at the subject issuer.
  const ccResponse = await oauth.clientCredentialsGrantRequest(subjectAs, subjectClient, subjectAuth, {}, httpOptions(subjectIssuer))
  check(ccResponse.headers.get('cache-control') === 'no-store', 'client_credentials response has Cache-Control: no-store')
  const cc = await oauth.processClientCredentialsResponse(subjectAs, subjectClient, ccResponse)
  check(cc.token_type === 'bearer', 'client_credentials: token_type Bearer')
  check(typeof cc.expires_in === 'number' && cc.expires_in > 0, 'client_credentials: expires_in present')
  check(cc.refresh_token === undefined, 'client_credentials: no refresh_token')
  if (subjectAudience) await validateAccessToken(subjectAs, cc.access_token, subjectAudience, 'subject token')

  // RFC 8693 token exchange at the issuer.
  const params = { subject_token: cc.access_token, subject_token_type: ACCESS_TOKEN }
  if (audience) params.audience = audience
  const exResponse = await oauth.genericTokenEndpointRequest(as, client, auth, TOKEN_EXCHANGE, params, httpOptions(issuer))
  const ex = await oauth.processGenericTokenEndpointResponse(as, client, exResponse)
  check(ex.token_type === 'bearer', 'token exchange: token_type Bearer')
  check(ex.issued_token_type === ACCESS_TOKEN, 'token exchange: issued_token_type is access_token')
  check(ex.refresh_token === undefined, 'token exchange: no refresh_token')
  check(ex.access_token !== cc.access_token, 'token exchange: a new token was issued')
  if (audience) await validateAccessToken(as, ex.access_token, audience, 'exchanged token')

  // RFC 7662 introspection and RFC 7009 revocation of the exchanged token.
  const intro = await oauth.processIntrospectionResponse(as, client,
    await oauth.introspectionRequest(as, client, auth, ex.access_token, httpOptions(issuer)))
  check(intro.active === true && intro.client_id === client.client_id, 'introspection: exchanged token is active')
  await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, auth, ex.access_token, httpOptions(issuer)))
  const after = await oauth.processIntrospectionResponse(as, client,
    await oauth.introspectionRequest(as, client, auth, ex.access_token, httpOptions(issuer)))
  check(after.active === false, 'revocation: revoked token introspects inactive')

  console.log(`all ${checks} checks passed`)
}

main().catch((err) => {
  console.error(`interop failure: ${err?.message ?? err}`)
  if (err?.cause) console.error('cause:', err.cause)
  process.exit(1)
})
