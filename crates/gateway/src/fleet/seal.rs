//! What a reader of Redis sees: keys that are HMACs and values sealed with AES-256-GCM.
//!
//! Three keys are derived from the configured one (HMAC-SHA256 as a PRF, one label each, as
//! HKDF-Expand does with a single block): a 4-byte key id that travels with every value, the
//! AEAD key, and the index key the Redis keys are computed under. A reader without the key can
//! neither test a guessed token against a Redis key (it is keyed, not a plain hash) nor read or
//! alter a value: the AEAD binds each value to its Redis key and key id (associated data), so a
//! value moved to another key, or edited, does not open.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;

/// The layout of a sealed value: version, key id, nonce, then ciphertext and tag.
const VERSION: u8 = 1;
const KID_LEN: usize = 4;
const HEADER_LEN: usize = 1 + KID_LEN + NONCE_LEN;

/// Why a value did not open.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unsealed {
    /// Sealed under another key (rotated out) or by another version: not ours to read.
    UnknownKey,
    /// Our key id, but it does not authenticate: edited, truncated or moved.
    Tampered,
}

/// Seals and opens values and computes Redis keys, under one configured key.
pub(crate) struct Sealer {
    kid: [u8; KID_LEN],
    aead: LessSafeKey,
    index: hmac::Key,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

impl Sealer {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, key);
        let derive = |label: &[u8]| hmac::sign(&root, label);
        let kid = derive(b"chaingate shared cache v1: key id");
        let aead = derive(b"chaingate shared cache v1: value encryption");
        let index = derive(b"chaingate shared cache v1: key index");
        Self {
            kid: kid.as_ref()[..KID_LEN]
                .try_into()
                .expect("HMAC-SHA256 is 32 bytes"),
            aead: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, aead.as_ref()).expect("32 bytes is an AES-256 key"),
            ),
            index: hmac::Key::new(hmac::HMAC_SHA256, index.as_ref()),
            rng: SystemRandom::new(),
        }
    }

    /// The keyed digest of `parts`, length-prefixed so that shifting a boundary changes it,
    /// as 43 base64url characters.
    pub(crate) fn index(&self, parts: &[&[u8]]) -> String {
        let mut ctx = hmac::Context::with_key(&self.index);
        for part in parts {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ctx.sign().as_ref())
    }

    /// `plaintext` sealed for the Redis key `key`.
    pub(crate) fn seal(&self, key: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        // A fresh random nonce per value (AES-GCM's bound: 2^32 values per key; rotate long
        // before, see the README).
        self.rng
            .fill(&mut nonce)
            .expect("the system's random source works");
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + AES_256_GCM.tag_len());
        out.push(VERSION);
        out.extend_from_slice(&self.kid);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(&out[..1 + KID_LEN], key)),
                &mut body,
            )
            .expect("AES-GCM seals any length we store");
        out.extend_from_slice(&body);
        out
    }

    /// The plaintext of `value`, read back from the Redis key `key`.
    pub(crate) fn open(&self, key: &[u8], value: &[u8]) -> Result<Vec<u8>, Unsealed> {
        if value.len() < 1 + KID_LEN || value[0] != VERSION || value[1..1 + KID_LEN] != self.kid {
            return Err(Unsealed::UnknownKey);
        }
        if value.len() < HEADER_LEN + AES_256_GCM.tag_len() {
            return Err(Unsealed::Tampered);
        }
        let nonce: [u8; NONCE_LEN] = value[1 + KID_LEN..HEADER_LEN]
            .try_into()
            .expect("sliced to the nonce's length");
        let mut body = value[HEADER_LEN..].to_vec();
        let plain = self
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(&value[..1 + KID_LEN], key)),
                &mut body,
            )
            .map_err(|_| Unsealed::Tampered)?;
        Ok(plain.to_vec())
    }
}

/// Associated data: the value's version and key id, and the Redis key it belongs to.
fn aad(header: &[u8], key: &[u8]) -> Vec<u8> {
    [header, key].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_only_under_its_key_and_redis_key() {
        let sealer = Sealer::new(&[7; 32]);
        let sealed = sealer.seal(b"k1", b"secret token");
        assert_eq!(sealer.open(b"k1", &sealed).unwrap(), b"secret token");
        assert!(
            !sealed.windows(6).any(|w| w == b"secret"),
            "ciphertext only"
        );
        // Moved to another Redis key: the associated data differs.
        assert_eq!(sealer.open(b"k2", &sealed), Err(Unsealed::Tampered));
        // Any edited byte past the key id.
        for i in 1 + KID_LEN..sealed.len() {
            let mut edited = sealed.clone();
            edited[i] ^= 1;
            assert_eq!(
                sealer.open(b"k1", &edited),
                Err(Unsealed::Tampered),
                "byte {i}"
            );
        }
        // Truncated.
        assert_eq!(
            sealer.open(b"k1", &sealed[..sealed.len() - 1]),
            Err(Unsealed::Tampered)
        );
        // Another key's value: ignored, not tampered.
        let rotated = Sealer::new(&[8; 32]);
        assert_eq!(rotated.open(b"k1", &sealed), Err(Unsealed::UnknownKey));
        assert_eq!(rotated.open(b"k1", &[]), Err(Unsealed::UnknownKey));
    }

    #[test]
    fn redis_keys_are_keyed_and_boundary_safe() {
        let sealer = Sealer::new(&[7; 32]);
        let a = sealer.index(&[b"billing", b"ab", b"c"]);
        assert_eq!(a.len(), 43);
        assert_ne!(a, sealer.index(&[b"billing", b"a", b"bc"]));
        assert_ne!(a, Sealer::new(&[8; 32]).index(&[b"billing", b"ab", b"c"]));
        assert_eq!(a, sealer.index(&[b"billing", b"ab", b"c"]));
    }
}
