//! Signing key of the authority and verification key sets (JWKS) of trusted parties.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::Serialize;
use serde_json::Value;

/// The authority's private signing key with its public JWK.
pub struct SigningKey {
    alg: Algorithm,
    kid: String,
    key: EncodingKey,
    public: Value,
    /// RFC 7638 SHA-256 thumbprint of the public key, whatever `kid` says (RFC 9449 `jkt`).
    thumbprint: String,
    /// An ES256 or EdDSA key parsed once: jsonwebtoken re-parses (and re-validates) the PKCS#8
    /// on every signature, which doubles the cost of a signature made per request (DPoP proofs).
    parsed: Option<Arc<Parsed>>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh ES256 (P-256) key.
    pub fn generate() -> Result<Self, String> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| "cannot generate an EC P-256 key".to_string())?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| "generated key does not load".to_string())?;
        // The public key is the uncompressed point 0x04 || x || y.
        let point = pair.public_key().as_ref();
        let (x, y) = point[1..].split_at(32);
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        });
        let mut key = Self::finish(
            Algorithm::ES256,
            EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
        )?;
        key.parsed = Some(Arc::new(Parsed::Ecdsa(pair)));
        Ok(key)
    }

    /// Loads a PKCS#8 PEM private key: EC P-256 → ES256, RSA → RS256 (or `alg`, if given).
    pub fn from_pem(pem: &[u8], alg: Option<Algorithm>) -> Result<Self, String> {
        if let Ok(key) = EncodingKey::from_ec_pem(pem) {
            let alg = alg.unwrap_or(Algorithm::ES256);
            if alg != Algorithm::ES256 {
                return Err(format!("an EC key signs ES256 only, not {alg:?}"));
            }
            let jwk = Jwk::from_encoding_key(&key, alg)
                .map_err(|e| format!("EC key is not a P-256 key: {e}"))?;
            let jwk = serde_json::to_value(&jwk).map_err(|e| e.to_string())?;
            let mut signing = Self::finish(alg, key, jwk)?;
            signing.parsed = ecdsa_pair(pem);
            return Ok(signing);
        }
        if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
            let alg = alg.unwrap_or(Algorithm::RS256);
            if !matches!(alg, Algorithm::RS256 | Algorithm::PS256) {
                return Err(format!("an RSA key signs RS256 or PS256, not {alg:?}"));
            }
            let jwk = Jwk::from_encoding_key(&key, alg).map_err(|e| format!("RSA key: {e}"))?;
            let jwk = serde_json::to_value(&jwk).map_err(|e| e.to_string())?;
            return Self::finish(alg, key, jwk);
        }
        if let Ok(key) = EncodingKey::from_ed_pem(pem) {
            let alg = alg.unwrap_or(Algorithm::EdDSA);
            if alg != Algorithm::EdDSA {
                return Err(format!("an Ed25519 key signs EdDSA only, not {alg:?}"));
            }
            // jsonwebtoken cannot derive an OKP JWK (it panics), so the public key comes from
            // aws-lc-rs: RFC 8037 §2, `x` is the 32-byte public key.
            let pair = ed25519_pair(pem)?;
            let jwk = serde_json::json!({
                "kty": "OKP", "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            });
            let mut signing = Self::finish(alg, key, jwk)?;
            signing.parsed = Some(Arc::new(Parsed::Ed25519(pair)));
            return Ok(signing);
        }
        Err("not a PKCS#8 PEM EC P-256, RSA or Ed25519 private key".to_string())
    }

    fn finish(alg: Algorithm, key: EncodingKey, jwk: Value) -> Result<Self, String> {
        let mut public = serde_json::Map::new();
        for member in ["kty", "crv", "x", "y", "n", "e"] {
            if let Some(v) = jwk.get(member) {
                public.insert(member.to_string(), v.clone());
            }
        }
        let parsed: Jwk = serde_json::from_value(Value::Object(public.clone()))
            .map_err(|e| format!("public key: {e}"))?;
        let kid = parsed.thumbprint(ThumbprintHash::SHA256);
        public.insert("kid".into(), Value::String(kid.clone()));
        public.insert(
            "alg".into(),
            serde_json::to_value(alg).map_err(|e| e.to_string())?,
        );
        public.insert("use".into(), Value::String("sig".into()));
        Ok(Self {
            alg,
            thumbprint: kid.clone(),
            kid,
            key,
            public: Value::Object(public),
            parsed: None,
        })
    }

    /// Replaces the thumbprint `kid` with one the key's owner registered.
    pub fn with_kid(mut self, kid: String) -> Self {
        if let Value::Object(public) = &mut self.public {
            public.insert("kid".into(), Value::String(kid.clone()));
        }
        self.kid = kid;
        self
    }

    /// The key ID put in the `kid` header of every JWT this key signs (RFC 7515 §4.1.4):
    /// its RFC 7638 SHA-256 thumbprint unless [`SigningKey::with_kid`] replaced it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWS algorithm this key signs with: ES256, RS256, PS256 or EdDSA.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK (with `kid`, `alg`, `use`).
    pub fn public_jwk(&self) -> &Value {
        &self.public
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key (base64url), e.g. RFC 9449's `jkt`.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The public JWK with its key members only (no `kid`, `alg`, `use`): what a self-contained
    /// JWS header carries in `jwk` (RFC 7515 §4.1.3, RFC 9449 §4.2).
    pub fn public_key_members(&self) -> Value {
        let mut members = self.public.clone();
        if let Value::Object(m) = &mut members {
            for extra in ["kid", "alg", "use"] {
                m.remove(extra);
            }
        }
        members
    }

    /// Signs a JWS signing input (`header.payload`, both already base64url) and returns the
    /// base64url signature: for callers that build the header once and reuse it.
    pub fn sign_input(&self, input: &[u8]) -> Result<String, String> {
        match self.parsed.as_deref() {
            // RFC 7518 §3.4: the fixed-width R || S that aws-lc-rs's FIXED algorithm produces.
            Some(Parsed::Ecdsa(pair)) => pair
                .sign(&SystemRandom::new(), input)
                .map(|signature| URL_SAFE_NO_PAD.encode(signature.as_ref()))
                .map_err(|_| "ES256 signing failed".to_string()),
            // RFC 8037 §3.1: the 64-byte Ed25519 signature.
            Some(Parsed::Ed25519(pair)) => Ok(URL_SAFE_NO_PAD.encode(pair.sign(input).as_ref())),
            None => {
                jsonwebtoken::crypto::sign(input, &self.key, self.alg).map_err(|e| e.to_string())
            }
        }
    }

    /// Signs `claims` as a JWT with the given `typ`.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, String> {
        let mut header = Header::new(self.alg);
        header.typ = Some(typ.to_string());
        header.kid = Some(self.kid.clone());
        if self.parsed.is_none() {
            return jsonwebtoken::encode(&header, claims, &self.key).map_err(|e| e.to_string());
        }
        let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        let claims = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let mut jws = URL_SAFE_NO_PAD.encode(header);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut jws);
        let signature = self.sign_input(jws.as_bytes())?;
        jws.push('.');
        jws.push_str(&signature);
        Ok(jws)
    }

    /// A key set holding only this key's public half, to verify tokens we issued.
    pub fn verification_set(&self) -> Result<KeySet, String> {
        KeySet::from_jwks_value(&serde_json::json!({ "keys": [self.public] }), &[self.alg])
    }
}

/// One verification key, bound to exactly one algorithm (RFC 8725 §3.1).
#[derive(Clone)]
pub struct VerifyKey {
    /// The JWK's key ID (RFC 7517 §4.5), if it has one; matched against a token's `kid`.
    pub kid: Option<String>,
    /// The one algorithm this key verifies: the JWK's `alg`, else implied by its curve or type.
    pub alg: Algorithm,
    /// The public key material.
    pub key: DecodingKey,
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// A set of public verification keys, parsed from a JWKS document.
#[derive(Clone, Default)]
pub struct KeySet {
    /// The usable keys, in JWKS order; never empty for a set parsed from a JWKS.
    pub keys: Vec<VerifyKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|k| (&k.kid, k.alg)).collect();
        f.debug_struct("KeySet").field("keys", &kids).finish()
    }
}

impl KeySet {
    /// Parses a JWKS JSON document. Keys that are symmetric, not for signatures, of an
    /// unsupported type or with an algorithm outside `allowed` are skipped.
    pub fn from_jwks(text: &[u8], allowed: &[Algorithm]) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(text).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        Self::from_jwks_value(&value, allowed)
    }

    /// As [`KeySet::from_jwks`], for a JWKS (RFC 7517 §5) already parsed as JSON.
    pub fn from_jwks_value(value: &Value, allowed: &[Algorithm]) -> Result<Self, String> {
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("JWKS has no `keys` array")?;
        let mut set = KeySet::default();
        for raw in keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
                continue;
            };
            if let Some(key) = verify_key(&jwk, allowed) {
                set.keys.push(key);
            }
        }
        if set.keys.is_empty() {
            return Err("JWKS has no usable signature verification key".into());
        }
        Ok(set)
    }

    /// Candidate keys for a token header: matching `kid` (if the token names one) and `alg`.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerifyKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid))
    }

    /// Whether any key in the set carries this `kid` (RFC 7517 §4.5), e.g. to decide that an
    /// unknown `kid` warrants refetching the JWKS.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

fn verify_key(jwk: &Jwk, allowed: &[Algorithm]) -> Option<VerifyKey> {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (_, AlgorithmParameters::OctetKey(_)) => return None,
        (Some(KeyAlgorithm::HS256 | KeyAlgorithm::HS384 | KeyAlgorithm::HS512), _) => return None,
        (Some(a), _) => serde_json::to_value(a).ok()?.as_str()?.parse().ok()?,
        (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
    };
    if !allowed.contains(&alg) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyKey {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    })
}

/// Algorithms accepted by default: asymmetric only, never `none` or HS*.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::EdDSA,
];

/// Parses an algorithm name for the allow-list, refusing `none` and symmetric algorithms.
pub fn parse_asymmetric_alg(name: &str) -> Result<Algorithm, String> {
    let alg: Algorithm = name
        .parse()
        .map_err(|_| format!("unknown algorithm `{name}`"))?;
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return Err(format!(
            "`{name}` is symmetric; only asymmetric algorithms are allowed"
        ));
    }
    Ok(alg)
}

/// A PKCS#8 PEM P-256 key as aws-lc-rs signs with it; `None` if it does not parse as one (the
/// jsonwebtoken path then signs).
fn ecdsa_pair(pem: &[u8]) -> Option<Arc<Parsed>> {
    use rustls::pki_types::pem::PemObject as _;
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem).ok()?;
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_pkcs8_der())
        .ok()
        .map(|pair| Arc::new(Parsed::Ecdsa(pair)))
}

/// A PKCS#8 PEM Ed25519 private key as aws-lc-rs signs with it (its public half is the JWK's).
fn ed25519_pair(pem: &[u8]) -> Result<Ed25519KeyPair, String> {
    use rustls::pki_types::pem::PemObject as _;
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem)
        .map_err(|e| format!("Ed25519 key: {e}"))?;
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
        .map_err(|e| format!("Ed25519 key: {e}"))
}

/// A private key in aws-lc-rs's form, ready to sign.
enum Parsed {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn es256_keys_sign_what_their_verification_set_accepts() {
        let generated = SigningKey::generate().unwrap();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        let loaded = SigningKey::from_pem(pem.as_bytes(), None).unwrap();
        for key in [generated, loaded] {
            assert!(key.parsed.is_some(), "the parsed pair signs");
            let jwt = key.sign("JWT", &serde_json::json!({"sub": "x"})).unwrap();
            let (header, _) = crate::jwt::peek(&jwt).unwrap();
            assert_eq!(header["kid"], key.kid());
            let verified = crate::jwt::verify(&jwt, &header, &key.verification_set().unwrap());
            assert_eq!(verified.unwrap().claims["sub"], "x");
        }
    }

    #[test]
    fn an_ed25519_key_loads_with_its_rfc_8037_public_jwk_and_thumbprint() {
        // RFC 8037 appendix A.1 (the key) and A.3 (its RFC 7638 thumbprint).
        let d = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let mut pkcs8 = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        pkcs8.extend_from_slice(&d);
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&pkcs8)
        );
        let key = SigningKey::from_pem(pem.as_bytes(), None).unwrap();
        assert_eq!(key.alg(), Algorithm::EdDSA);
        assert_eq!(key.public_jwk()["kty"], "OKP");
        assert_eq!(
            key.public_jwk()["x"],
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        let signed = key.sign("JWT", &serde_json::json!({"sub": "x"})).unwrap();
        let (header, _) = crate::jwt::peek(&signed).unwrap();
        let verified = crate::jwt::verify(&signed, &header, &key.verification_set().unwrap());
        assert_eq!(verified.unwrap().claims["sub"], "x");
    }
}
