//! `dpop` on a domain: chaingate proves possession of a key to the token server and uses the
//! DPoP-bound tokens it issues (RFC 9449 §5), sending each with a fresh proof (§7.1).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use super::digest::Digest;
use super::ConfigError;
use chaingate_oauth::dpop::ProofKey;

/// The key a domain's proofs are signed with.
#[derive(Debug, Clone)]
pub struct DpopKey {
    /// The key; tokens bound to it keep an `Arc` of it in the cache.
    pub key: Arc<ProofKey>,
    /// The PEM's digest when the key came from `dpop_key_file` (change detection on reload);
    /// `None` for the process's generated key.
    pub(super) pem_digest: Option<[u8; 32]>,
}

/// One ES256 key per process for every domain without `dpop_key_file`: a reload keeps it, so
/// cached bound tokens stay usable; a restart makes a new one (the tokens are re-exchanged).
fn process_key() -> Result<Arc<ProofKey>, String> {
    static KEY: OnceLock<Arc<ProofKey>> = OnceLock::new();
    if let Some(key) = KEY.get() {
        return Ok(key.clone());
    }
    let key = Arc::new(ProofKey::generate()?);
    Ok(KEY.get_or_init(|| key).clone())
}

/// `domains.<name>.dpop` and `dpop_key_file`.
pub(super) fn dpop_key(
    name: &str,
    enabled: bool,
    key_file: Option<&Path>,
) -> Result<Option<DpopKey>, ConfigError> {
    let key = |field: &str| format!("domains.{name}.{field}");
    match (enabled, key_file) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(ConfigError::key(
            key("dpop_key_file"),
            "set dpop = true to use it",
        )),
        (true, None) => Ok(Some(DpopKey {
            key: process_key().map_err(|e| ConfigError::key(key("dpop"), e))?,
            pem_digest: None,
        })),
        (true, Some(path)) => {
            let pem = std::fs::read(path).map_err(|e| {
                ConfigError::key(
                    key("dpop_key_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let proof_key =
                ProofKey::from_pem(&pem).map_err(|e| ConfigError::key(key("dpop_key_file"), e))?;
            let mut digest = Digest::new();
            digest.part(&pem);
            Ok(Some(DpopKey {
                key: Arc::new(proof_key),
                pem_digest: Some(digest.finish()),
            }))
        }
    }
}

impl DpopKey {
    /// What a reload compares: which key, never the key itself.
    pub(super) fn fingerprint(&self, d: &mut Digest) {
        d.part(b"dpop");
        match &self.pem_digest {
            Some(pem) => d.part(pem),
            None => d.part(b"generated"),
        }
    }
}
