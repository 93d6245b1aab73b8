//! Test support for the authority tests: spawning domains A and B, an HTTP client, JWT forging.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use chaingate_authority::{spawn, AuthorityConfig, RunningAuthority};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub const FORGE_ISS: &str = "https://forge.example";
pub const CHAIN: &str = "http://oauth.net/grant_type/chain";
pub const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const AT_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An EC P-256 key the test controls, to forge tokens and client assertions.
pub struct TestKey {
    pub kid: String,
    key: EncodingKey,
    pub jwk: Value,
}

/// The `kid` only: never the private key.
impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TestKey {
    pub fn new(kid: &str) -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let (x, y) = pair.public_key().as_ref()[1..].split_at(32);
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        });
        Self {
            kid: kid.to_string(),
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
        }
    }

    pub fn jwks(&self) -> String {
        json!({ "keys": [self.jwk] }).to_string()
    }

    /// Signs `claims` with header `typ` and this key's kid; `edit` may change the header.
    pub fn sign_with(&self, typ: &str, claims: &Value, edit: impl FnOnce(&mut Header)) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.to_string());
        header.kid = Some(self.kid.clone());
        edit(&mut header);
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    pub fn sign(&self, typ: &str, claims: &Value) -> String {
        self.sign_with(typ, claims, |_| {})
    }
}

/// Claims of a valid access token from the forge issuer.
pub fn forge_claims(scope: &str) -> Value {
    json!({
        "iss": FORGE_ISS, "sub": "alice", "aud": "urn:a:gateway", "client_id": "app",
        "scope": scope, "iat": now(), "exp": now() + 600, "jti": "forged-1",
    })
}

/// The unverified claims of a JWT.
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The unverified header of a JWT.
pub fn header(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// A JSON answer from the server.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: String,
}

impl Reply {
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
    pub fn token(&self) -> String {
        assert_eq!(self.status, StatusCode::OK, "{}", self.raw);
        self.body["access_token"].as_str().unwrap().to_string()
    }
}

pub async fn send(req: http::Request<Full<Bytes>>) -> Reply {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let response = client.request(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        raw,
    }
}

pub async fn get(url: &str) -> Reply {
    send(http::Request::get(url).body(Full::default()).unwrap()).await
}

/// `Authorization: Basic` per RFC 6749 §2.3.1 (form-urlencode, then base64).
pub fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

/// POSTs a form; `auth` is an Authorization header value.
pub async fn post(url: &str, auth: Option<&str>, params: &[(&str, &str)]) -> Reply {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let mut req = http::Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    if let Some(auth) = auth {
        req.headers_mut()
            .insert("authorization", auth.parse().unwrap());
    }
    send(req).await
}

/// Domain A (plays the upstream IdP) and domain B (the authority under test).
pub struct Domains {
    pub a: RunningAuthority,
    pub b: RunningAuthority,
    pub forge: TestKey,
    pub client_key: TestKey,
    _dir: tempfile::TempDir,
}

/// The two issuers and the key ids: no key material, no authority state.
impl std::fmt::Debug for Domains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Domains")
            .field("a", &self.a.issuer())
            .field("b", &self.b.issuer())
            .field("forge", &self.forge)
            .field("client_key", &self.client_key)
            .finish_non_exhaustive()
    }
}

impl Domains {
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// Starts A and B; `extra_b` is appended to B's TOML.
    pub async fn start_with(extra_b: &str) -> Self {
        let a = spawn(AuthorityConfig::from_toml(DOMAIN_A).unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let forge = TestKey::new("forge-1");
        let client_key = TestKey::new("client-1");
        std::fs::write(dir.path().join("forge.json"), forge.jwks()).unwrap();
        std::fs::write(dir.path().join("client.json"), client_key.jwks()).unwrap();
        let toml = domain_b(a.issuer(), dir.path()) + extra_b;
        let b = spawn(AuthorityConfig::from_toml(&toml).unwrap())
            .await
            .unwrap();
        Self {
            a,
            b,
            forge,
            client_key,
            _dir: dir,
        }
    }

    pub fn b_url(&self, path: &str) -> String {
        format!("{}{path}", self.b.issuer())
    }

    /// An AT1 from domain A via client_credentials.
    pub async fn at1(&self, scope: &str) -> String {
        let url = format!("{}/token", self.a.issuer());
        post(
            &url,
            Some(&basic("app", "app-secret")),
            &[("grant_type", "client_credentials"), ("scope", scope)],
        )
        .await
        .token()
    }

    /// The chain grant at B as the gateway client.
    pub async fn chain(&self, oauth_token: &str, extra: &[(&str, &str)]) -> Reply {
        let mut params = vec![("grant_type", CHAIN), ("oauth_token", oauth_token)];
        params.extend_from_slice(extra);
        post(
            &self.b_url("/token"),
            Some(&basic("gateway", "gw-secret")),
            &params,
        )
        .await
    }

    /// A client assertion for `jwt-client` with the given claim overrides.
    pub fn assertion(&self, overrides: Value) -> String {
        let mut claims = json!({
            "iss": "jwt-client", "sub": "jwt-client", "aud": self.b_url("/token"),
            "iat": now(), "exp": now() + 60, "jti": format!("jti-{}", rand_suffix()),
        });
        for (k, v) in overrides.as_object().unwrap() {
            claims[k] = v.clone();
        }
        self.client_key.sign("JWT", &claims)
    }
}

fn rand_suffix() -> String {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    URL_SAFE_NO_PAD.encode(b)
}

const DOMAIN_A: &str = r#"
listen = "127.0.0.1:0"
token_ttl = "10m"
default_audience = "urn:a:gateway"

[[clients]]
client_id = "app"
client_secret = "app-secret"
grants = ["client_credentials"]
scope = "a:read a:write a:admin"
"#;

fn domain_b(a_issuer: &str, dir: &Path) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
token_ttl = "5m"
default_audience = "urn:b:api"
audiences = ["urn:b:api", "urn:b:other"]

[[clients]]
client_id = "gateway"
client_secret = "gw-secret"
auth_method = "client_secret_basic"
grants = ["client_credentials", "chain", "token-exchange"]
scope = "b:read b:write"

[[clients]]
client_id = "poster"
client_secret = "post-secret"
auth_method = "client_secret_post"
grants = ["client_credentials"]
scope = "b:read"

[[clients]]
client_id = "a:b ü"
client_secret = "s%cr+t &=x"
grants = ["client_credentials"]
scope = "b:read"

[[clients]]
client_id = "jwt-client"
jwks_file = "{dir}/client.json"
auth_method = "private_key_jwt"
grants = ["client_credentials", "chain"]
scope = "b:read"

[[clients]]
client_id = "limited"
client_secret = "limited-secret"
grants = ["client_credentials"]
scope = "b:read b:write"

[[trusted_issuers]]
issuer = "{a_issuer}"
jwks_uri = "{a_issuer}/jwks.json"
allow_insecure_http = true
audiences = ["urn:a:gateway"]
scope_map = {{ "a:read" = "b:read", "a:write" = "b:write" }}

[[trusted_issuers]]
issuer = "{FORGE_ISS}"
jwks_file = "{dir}/forge.json"
audiences = ["urn:a:gateway"]
scope_map = {{ "a:read" = "b:read", "a:write" = "b:write" }}
subject_prefix = "forge|"
"#,
        dir = dir.display()
    )
}
