//! SHA-256 digests: cache keys, token fingerprints and PKCE (RFC 7636 §4.2) all use these, so
//! no token is ever kept or compared as itself where its digest will do.

/// A running SHA-256 over length-prefixed parts, so `("ab", "c")` and `("a", "bc")` differ.
#[derive(Clone)]
pub struct Sha256(aws_lc_rs::digest::Context);

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sha256")
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    /// An empty digest.
    pub fn new() -> Self {
        Self(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
    }

    /// Adds raw bytes (no length prefix).
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Adds one part, prefixed by its length, so parts cannot run into each other.
    pub fn part(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    /// The 32-byte digest.
    pub fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

/// The SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut d = Sha256::new();
    d.update(bytes);
    d.finish()
}

/// Lower-case hex of a digest, for logs and ids that must not show the value digested.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_length_prefixed() {
        let mut a = Sha256::new();
        a.part(b"ab");
        a.part(b"c");
        let mut b = Sha256::new();
        b.part(b"a");
        b.part(b"bc");
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn known_vector() {
        // FIPS 180-2 appendix B.1.
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
