// Interop check of chaingate as an OAuth protected resource (RFC 9728) with oauth4webapi
// (independent client code), walking the MCP authorization flow: call without a usable token,
// read `resource_metadata` from the 401 challenge, fetch and validate the resource's metadata
// (its `resource` must be the identifier, RFC 9728 §3.3), discover the authorization server it
// names (RFC 8414), get a token there, and call again.
//
// Usage: node resource.mjs --resource URL --client-id ID --client-secret SECRET --scope SCOPE
// Exits non-zero on the first failed check.

import * as oauth from 'oauth4webapi'

function required(name) {
  const i = process.argv.indexOf(`--${name}`)
  if (i === -1 || i + 1 >= process.argv.length) throw new Error(`missing --${name}`)
  return process.argv[i + 1]
}

let checks = 0
function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`)
  checks += 1
  console.log(`ok ${checks} - ${what}`)
}

const resource = new URL(required('resource'))
const insecure = { [oauth.allowInsecureRequests]: resource.protocol === 'http:' }
const target = new URL(`${resource.href.replace(/\/$/, '')}/tools/list`)

// 1. A token chaingate's token server refuses: 401 with a challenge naming the metadata.
let challenges
try {
  await oauth.protectedResourceRequest('not-a-token-anyone-issued', 'GET', target, new Headers(), null, insecure)
} catch (err) {
  if (!(err instanceof oauth.WWWAuthenticateChallengeError)) throw err
  check(err.status === 401, 'an unusable token gets 401 with WWW-Authenticate')
  challenges = err.cause
}
check(Array.isArray(challenges), 'the 401 carried challenges oauth4webapi could parse')
const bearer = challenges.find((c) => c.scheme === 'bearer')
check(bearer?.parameters.error === 'invalid_token', 'Bearer challenge with error="invalid_token"')
const metadataUrl = bearer.parameters.resource_metadata
check(typeof metadataUrl === 'string', `resource_metadata parameter (RFC 9728 §5.1): ${metadataUrl}`)
check(typeof bearer.parameters.scope === 'string' && bearer.parameters.scope.length > 0, `scope parameter: ${bearer.parameters.scope}`)

// 2. The metadata, validated as oauth4webapi does (resource identifier match, §3.3).
const response = await oauth.resourceDiscoveryRequest(resource, insecure)
check(response.url === metadataUrl, 'the well-known URL formed from the identifier is the challenge\'s (§3.1)')
const rs = await oauth.processResourceDiscoveryResponse(resource, response)
check(rs.resource === resource.href, `metadata resource is the identifier: ${rs.resource}`)
check(Array.isArray(rs.authorization_servers) && rs.authorization_servers.length > 0, 'authorization_servers listed')
check(rs.bearer_methods_supported?.includes('header'), 'bearer_methods_supported includes header')

// 3. The authorization server it names, then a token from it.
const issuer = new URL(rs.authorization_servers[0])
const as = await oauth.processDiscoveryResponse(
  issuer,
  await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }),
)
check(as.issuer === issuer.href.replace(/\/$/, '') || as.issuer === issuer.href, `RFC 8414 metadata of ${as.issuer}`)
const client = { client_id: required('client-id') }
const tokens = await oauth.processClientCredentialsResponse(
  as,
  client,
  await oauth.clientCredentialsGrantRequest(
    as,
    client,
    oauth.ClientSecretBasic(required('client-secret')),
    new URLSearchParams({ scope: required('scope') }),
    insecure,
  ),
)
check(typeof tokens.access_token === 'string', 'client_credentials at the authorization server')

// 4. Through chaingate with it.
const ok = await oauth.protectedResourceRequest(tokens.access_token, 'GET', target, new Headers(), null, insecure)
check(ok.status === 200, 'the token from the named authorization server is accepted (200)')
const echoed = await ok.json()
check(!JSON.stringify(echoed).includes(tokens.access_token), 'the caller\'s token never reached the upstream')
console.log(`${checks} checks passed`)
