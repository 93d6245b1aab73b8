//! Secret-bearing newtypes: tokens, client secrets, assertions.
//!
//! None of these implement `Display`, `PartialEq` or `Serialize`, and their `Debug` prints only the
//! type name and length, so a secret cannot reach a log line, an error body or a metric by accident.
//! Comparison is constant-time and explicit ([`Secret::ct_eq`]).

use std::fmt;
use std::sync::Arc;

/// A secret string (client secret, bearer token, assertion). Cheap to clone.
///
/// Not comparable with `==` (use [`Secret::ct_eq`]):
///
/// ```compile_fail
/// let a = chaingate::secret::Secret::new("x");
/// let _ = a == chaingate::secret::Secret::new("x");
/// ```
///
/// and not printable with `{}`:
///
/// ```compile_fail
/// let a = chaingate::secret::Secret::new("x");
/// println!("{a}");
/// ```
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps `value`; from here on it is only reachable through [`Secret::expose`].
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The secret's value. Call sites are where secrets leave the process: keep them few.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string, e.g. to reject a blank configured secret.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time equality, so comparing a presented secret leaks nothing through timing.
    pub fn ct_eq(&self, presented: &str) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(self.0.as_bytes(), presented.as_bytes())
            .is_ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([redacted; {} bytes])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2-very-secret");
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn ct_eq_matches_only_the_exact_value() {
        let s = Secret::new("abc");
        assert!(s.ct_eq("abc"));
        assert!(!s.ct_eq("abd"));
        assert!(!s.ct_eq("ab"));
        assert!(!s.ct_eq("abcd"));
        assert!(!s.ct_eq(""));
    }
}
