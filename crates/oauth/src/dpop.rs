//! DPoP (RFC 9449): proofs that the sender of a request holds a private key, made and checked.
//!
//! A proof is a JWS with `typ` `dpop+jwt` whose header carries the public key (§4.2) and whose
//! claims bind it to one request (`htm`, `htu`, `iat`, `jti`), to an access token (`ath`) and to
//! a server-chosen `nonce` (§8, §9). Replay refusal by `jti` is the checker's (it needs a store).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::header::HeaderName;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use serde_json::{json, Map, Value};

use super::digest::sha256;
use super::jwt;
use super::keys::{KeySet, SigningKey, DEFAULT_ALGORITHMS};
use super::util::{now_secs, random_id};

/// The `typ` of a DPoP proof JWT (RFC 9449 §4.2).
pub const TYP: &str = "dpop+jwt";
/// The `token_type` of a DPoP-bound access token and its `Authorization` scheme (§5, §7.1).
pub const TOKEN_TYPE: &str = "DPoP";
/// The request header carrying a proof (§4.1).
pub const DPOP: HeaderName = HeaderName::from_static("dpop");
/// The response header carrying a server-provided nonce (§8.1, §9).
pub const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");
/// Longest proof accepted, in bytes: a header with an RSA-4096 JWK and the claims fit easily.
pub const MAX_PROOF_LEN: usize = 4096;

/// A key that signs DPoP proofs, with its JWS header encoded once.
pub struct ProofKey {
    key: SigningKey,
    /// base64url of `{"typ":"dpop+jwt","alg":…,"jwk":{…}}`: the same for every proof.
    header: String,
}

impl fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProofKey")
            .field("alg", &self.key.alg())
            .field("jkt", &self.jkt())
            .finish_non_exhaustive()
    }
}

impl ProofKey {
    /// A fresh ES256 key, for a process that was given none (RFC 9449 §2: the client's own key).
    pub fn generate() -> Result<Self, String> {
        Self::new(SigningKey::generate()?)
    }

    /// A PKCS#8 PEM private key (EC P-256, RSA or Ed25519).
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        Self::new(SigningKey::from_pem(pem, None)?)
    }

    fn new(key: SigningKey) -> Result<Self, String> {
        let header = json!({ "typ": TYP, "alg": key.alg(), "jwk": key.public_key_members() });
        let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        Ok(Self {
            header: URL_SAFE_NO_PAD.encode(header),
            key,
        })
    }

    /// The key's RFC 7638 thumbprint: the `cnf.jkt` of tokens bound to it (§6.1).
    pub fn jkt(&self) -> &str {
        self.key.thumbprint()
    }

    /// A proof for one request: `htm` and `htu` as the receiver will see them, `ath` when an
    /// access token goes with it (§4.2), and the receiver's last `nonce`, if it asked for one.
    pub fn proof(
        &self,
        htm: &str,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, String> {
        let mut claims = Map::with_capacity(6);
        claims.insert("jti".into(), Value::String(random_id()));
        claims.insert("htm".into(), Value::String(htm.to_string()));
        claims.insert("htu".into(), Value::String(htu.to_string()));
        claims.insert("iat".into(), Value::from(now_secs()));
        if let Some(token) = access_token {
            claims.insert("ath".into(), Value::String(ath(token)));
        }
        if let Some(nonce) = nonce {
            claims.insert("nonce".into(), Value::String(nonce.to_string()));
        }
        let payload = serde_json::to_vec(&claims).map_err(|e| e.to_string())?;
        let mut jws = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 100);
        jws.push_str(&self.header);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut jws);
        let signature = self.key.sign_input(jws.as_bytes())?;
        jws.push('.');
        jws.push_str(&signature);
        Ok(jws)
    }
}

/// `ath`: base64url of the SHA-256 of the access token's ASCII (RFC 9449 §4.2).
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(access_token.as_bytes()))
}

/// The `htu` of a request: scheme and host lowercased, a default port dropped, the path kept,
/// query and fragment removed (§4.2, §4.3 step 9; RFC 3986 §6.2.2 and §6.2.3).
pub fn htu(scheme: &str, authority: &str, path: &str) -> String {
    let scheme = scheme.to_ascii_lowercase();
    let authority = authority.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => "",
    };
    let authority = match authority.strip_suffix(default) {
        Some(host) if !default.is_empty() => host,
        _ => authority.as_str(),
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = if path.is_empty() { "/" } else { path };
    format!("{scheme}://{authority}{path}")
}

/// [`htu`] of a full URL; `None` when it is not an absolute URL.
pub fn normalize_htu(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?.as_str();
    if authority.contains('@') {
        return None;
    }
    Some(htu(scheme, authority, uri.path()))
}

/// What a proof must match: the request it came with and the receiver's policy.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The request's method.
    pub htm: &'a str,
    /// The request's URL as the receiver was reached (any form [`normalize_htu`] accepts).
    pub htu: &'a str,
    /// The access token presented with the proof: `ath` must be its hash (§4.3 step 11).
    pub access_token: Option<&'a str>,
    /// Nonces the receiver currently accepts; empty means it requires none (§8, §9).
    pub nonces: &'a [&'a str],
    /// Oldest acceptable `iat`, in seconds before now (§4.3 step 11, §11.1).
    pub max_age: u64,
    /// How far in the future `iat` may be, for clock skew.
    pub skew: u64,
}

/// A proof that passed every check of RFC 9449 §4.3 except replay refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The RFC 7638 thumbprint of the proof's key, to compare with a token's `cnf.jkt`.
    pub jkt: String,
    /// The proof's `jti`, for the receiver's replay store.
    pub jti: String,
    /// The proof's `iat`: a replay store may forget the `jti` after `iat + max_age + skew`.
    pub iat: u64,
}

/// Why a proof was refused: a bounded set, usable as a metric label, with a fixed description
/// that never quotes the proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofError {
    /// Not a compact JWS of JSON objects, too long, or a required claim missing or mistyped.
    Malformed,
    /// `typ` is not `dpop+jwt`.
    Type,
    /// `alg` is `none`, symmetric or unsupported.
    Algorithm,
    /// The `jwk` header is missing, holds a private key, or is not a usable public key.
    Key,
    /// The signature does not verify with the header's key.
    Signature,
    /// `htm` is not the request's method.
    Method,
    /// `htu` is not the request's URL.
    Uri,
    /// `iat` is too old or in the future.
    Time,
    /// `ath` is missing or not the hash of the presented access token.
    TokenHash,
    /// `nonce` is missing or not one the receiver issued: answer `use_dpop_nonce` (§8, §9).
    Nonce,
    /// The `jti` was seen before (checked by the receiver's replay store).
    Replay,
    /// The key is not the one the access token is bound to (`cnf.jkt`, §6.1, §7.1).
    Binding,
}

impl ProofError {
    /// A short, fixed label (for metrics and logs).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Type => "typ",
            Self::Algorithm => "alg",
            Self::Key => "jwk",
            Self::Signature => "signature",
            Self::Method => "htm",
            Self::Uri => "htu",
            Self::Time => "iat",
            Self::TokenHash => "ath",
            Self::Nonce => "nonce",
            Self::Replay => "replay",
            Self::Binding => "binding",
        }
    }

    /// The `error_description` sent to the client: fixed text, nothing of the proof.
    pub fn description(self) -> &'static str {
        match self {
            Self::Malformed => "the DPoP proof is malformed or lacks a required claim",
            Self::Type => "the DPoP proof's typ is not dpop+jwt",
            Self::Algorithm => "the DPoP proof's algorithm is not accepted",
            Self::Key => "the DPoP proof's jwk is not a usable public key",
            Self::Signature => "the DPoP proof's signature is invalid",
            Self::Method => "the DPoP proof's htm does not match the request method",
            Self::Uri => "the DPoP proof's htu does not match the request URI",
            Self::Time => "the DPoP proof's iat is outside the acceptable window",
            Self::TokenHash => "the DPoP proof's ath does not match the access token",
            Self::Nonce => "a DPoP nonce is required; use the one in the DPoP-Nonce header",
            Self::Replay => "the DPoP proof was already used",
            Self::Binding => "the DPoP proof's key is not the one the access token is bound to",
        }
    }
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for ProofError {}

/// JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Checks a proof against RFC 9449 §4.3 steps 2–12 (step 1, one `DPoP` header, and replay
/// refusal are the caller's: it sees the headers and owns the store).
pub fn verify(proof: &str, expect: &Expect<'_>) -> Result<Proof, ProofError> {
    use ProofError::*;
    if proof.len() > MAX_PROOF_LEN {
        return Err(Malformed);
    }
    let (header, claims) = jwt::peek(proof).map_err(|_| Malformed)?;
    if header.get("typ").and_then(Value::as_str) != Some(TYP) {
        return Err(Type);
    }
    let alg = header.get("alg").and_then(Value::as_str).ok_or(Algorithm)?;
    let alg: jsonwebtoken::Algorithm = alg.parse().map_err(|_| Algorithm)?;
    if !DEFAULT_ALGORITHMS.contains(&alg) {
        return Err(Algorithm);
    }
    let Some(Value::Object(jwk)) = header.get("jwk") else {
        return Err(Key);
    };
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(Key);
    }
    // The key verifies exactly the header's algorithm (RFC 8725 §3.1); a `kid` in either place
    // plays no part, the key is the header's own.
    let mut public = jwk.clone();
    public.remove("kid");
    public.insert("alg".into(), json!(alg));
    public.remove("use");
    let parsed: Jwk = serde_json::from_value(Value::Object(public.clone())).map_err(|_| Key)?;
    let keys = KeySet::from_jwks_value(&json!({ "keys": [public] }), &[alg]).map_err(|_| Key)?;
    let mut signed_header = header.clone();
    if let Value::Object(h) = &mut signed_header {
        h.remove("kid");
    }
    jwt::verify(proof, &signed_header, &keys).map_err(|_| Signature)?;

    let text = |name: &str| claims.get(name).and_then(Value::as_str).ok_or(Malformed);
    let jti = text("jti")?;
    if jti.is_empty() || jti.len() > 256 {
        return Err(Malformed);
    }
    let htm = text("htm")?;
    let htu_claim = text("htu")?;
    let iat = jwt::numeric(&claims, "iat")
        .map_err(|_| Malformed)?
        .ok_or(Malformed)?;
    if htm != expect.htm {
        return Err(Method);
    }
    match (normalize_htu(htu_claim), normalize_htu(expect.htu)) {
        (Some(got), Some(want)) if got == want => {}
        _ => return Err(Uri),
    }
    let now = now_secs();
    if iat.saturating_add(expect.max_age) < now || iat > now.saturating_add(expect.skew) {
        return Err(Time);
    }
    if let Some(token) = expect.access_token {
        if claims.get("ath").and_then(Value::as_str) != Some(ath(token).as_str()) {
            return Err(TokenHash);
        }
    }
    if !expect.nonces.is_empty() {
        let nonce = claims.get("nonce").and_then(Value::as_str);
        if !nonce.is_some_and(|n| expect.nonces.contains(&n)) {
            return Err(Nonce);
        }
    }
    Ok(Proof {
        jkt: parsed.thumbprint(ThumbprintHash::SHA256),
        jti: jti.to_string(),
        iat,
    })
}

/// The `cnf.jkt` a JWT access token is bound to (RFC 9449 §6.1), if it names one.
pub fn bound_jkt(claims: &Value) -> Option<&str> {
    claims.get("cnf")?.get("jkt")?.as_str()
}

#[cfg(test)]
mod tests;
