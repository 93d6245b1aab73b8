//! DPoP at the token endpoint (RFC 9449 §5): a request with a valid proof gets an access token
//! bound to the proof's key (`cnf.jkt`, §6.1) and `token_type` `DPoP`; without one, Bearer.

use http::HeaderMap;

use super::state::Authority;
use super::store::InsertError;
use super::web::OAuthError;
use chaingate_oauth::digest::{hex, sha256};
use chaingate_oauth::dpop::{self, Expect, DPOP};
use chaingate_oauth::util::now_secs;

/// Oldest acceptable proof `iat`, in seconds (§11.1: a short window bounds replay storage).
const MAX_AGE: u64 = 60;
/// How far ahead of our clock a proof's `iat` may be.
const SKEW: u64 = 5;

/// The thumbprint of the key a token request proves possession of, `None` without a `DPoP`
/// header. A bad proof is `invalid_dpop_proof` (§5, §7.1); the proof itself is never quoted.
pub(crate) fn check(state: &Authority, headers: &HeaderMap) -> Result<Option<String>, OAuthError> {
    let mut proofs = headers.get_all(DPOP).iter();
    let Some(proof) = proofs.next() else {
        return Ok(None);
    };
    // §4.3 step 1: exactly one DPoP header.
    if proofs.next().is_some() {
        return Err(invalid("more than one DPoP header"));
    }
    let proof = proof
        .to_str()
        .map_err(|_| invalid("the DPoP proof is not a compact JWS"))?;
    // htu is the token endpoint as published in the metadata (§4.3 step 9).
    let htu = state.endpoint("/token");
    let expect = Expect {
        htm: "POST",
        htu: &htu,
        // §5: no access token accompanies a token request, so no `ath`.
        access_token: None,
        nonces: &[],
        max_age: MAX_AGE,
        skew: SKEW,
    };
    let proof = dpop::verify(proof, &expect).map_err(|e| invalid(e.description()))?;
    // §11.1: a jti is remembered for as long as its proof could be accepted. The key is a digest
    // so the cache holds nothing a client chose verbatim.
    let key = format!("dpop\u{0}{}", hex(&sha256(proof.jti.as_bytes())));
    let until = proof.iat.max(now_secs()) + MAX_AGE + SKEW;
    match state.replay.insert(key, until) {
        Ok(()) => Ok(Some(proof.jkt)),
        Err(InsertError::Present) => Err(invalid("the DPoP proof was already used")),
        Err(InsertError::Full) => Err(OAuthError::unavailable("replay cache is full")),
    }
}

fn invalid(description: &str) -> OAuthError {
    OAuthError::new("invalid_dpop_proof", description)
}
