//! Digests that tell whether a reloaded config differs from the running one.

/// SHA-256 over length-prefixed parts, so part boundaries cannot shift.
pub(crate) struct Digest(aws_lc_rs::digest::Context);

impl Digest {
    pub(crate) fn new() -> Self {
        Self(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
    }

    pub(crate) fn part(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    pub(crate) fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}
