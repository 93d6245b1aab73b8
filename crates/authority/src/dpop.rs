//! DPoP at the token endpoint (RFC 9449 §5): a request with a valid proof gets an access token
//! bound to the proof's key (`cnf.jkt`, §6.1) and `token_type` `DPoP`; without one, Bearer.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue};

use super::state::Authority;
use super::store::InsertError;
use super::web::OAuthError;
use chaingate_oauth::digest::{hex, sha256};
use chaingate_oauth::dpop::{self, Expect, ProofError, DPOP};
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
    let nonces = if state.config.require_dpop_nonce {
        state.dpop_nonces.accepted(now_secs()).to_vec()
    } else {
        Vec::new()
    };
    let expect = Expect {
        htm: "POST",
        htu: &htu,
        // §5: no access token accompanies a token request, so no `ath`.
        access_token: None,
        nonces: &nonces.iter().map(String::as_str).collect::<Vec<_>>(),
        max_age: MAX_AGE,
        skew: SKEW,
    };
    let proof = dpop::verify(proof, &expect).map_err(|e| match e {
        // §8: the client retries with the nonce in this response's DPoP-Nonce header.
        ProofError::Nonce => OAuthError::new("use_dpop_nonce", e.description()),
        e => invalid(e.description()),
    })?;
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

/// Seconds a nonce slot lasts; a nonce is accepted in its slot and the next (§8: the server
/// chooses how long; stateless, so nothing is stored per client).
const SLOT: u64 = 300;

/// Stateless DPoP nonces: base64url HMAC-SHA256 of the time slot under a per-process key.
pub(crate) struct Nonces {
    key: hmac::Key,
}

/// Never the key.
impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces").finish_non_exhaustive()
    }
}

impl Nonces {
    pub(crate) fn new() -> Result<Self, String> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .map_err(|_| "cannot generate the DPoP nonce key".to_string())?;
        Ok(Self { key })
    }

    fn for_slot(&self, slot: u64) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, &slot.to_be_bytes()))
    }

    /// The nonce to hand out at Unix time `now`.
    pub(crate) fn current(&self, now: u64) -> String {
        self.for_slot(now / SLOT)
    }

    /// The nonces accepted at `now`: the current slot's and the previous one's, so a nonce
    /// handed out just before a slot boundary still works.
    pub(crate) fn accepted(&self, now: u64) -> [String; 2] {
        let slot = now / SLOT;
        [self.for_slot(slot), self.for_slot(slot.saturating_sub(1))]
    }
}

/// Adds a fresh `DPoP-Nonce` to a token endpoint response when nonces are required (§8.1,
/// RFC 9449 §8.2: a server may supply a new nonce on any response).
pub(crate) fn add_nonce(state: &Authority, headers: &mut HeaderMap) {
    if state.config.require_dpop_nonce {
        if let Ok(v) = HeaderValue::from_str(&state.dpop_nonces.current(now_secs())) {
            headers.insert(dpop::DPOP_NONCE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_accepted_in_its_slot_and_the_next_and_refused_after() {
        let nonces = Nonces::new().unwrap();
        let t = 1_000 * SLOT + 10;
        let issued = nonces.current(t);
        assert!(nonces.accepted(t).contains(&issued));
        assert!(nonces.accepted(t + SLOT).contains(&issued));
        assert!(!nonces.accepted(t + 2 * SLOT).contains(&issued));
        // Another process (another key) does not accept it.
        assert!(!Nonces::new().unwrap().accepted(t).contains(&issued));
    }
}
