//! The scope of a grant as a set (RFC 6749 §3.3): what the gateway holds, asks for and was
//! refused, compared as sets whatever order a server lists them in.

/// A scope as a set of tokens (RFC 6749 §3.3: space-separated, order does not matter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Box<str>>);

impl Scopes {
    /// The set of a space-delimited scope string; duplicates and order do not matter.
    pub fn parse(scope: &str) -> Self {
        let mut tokens: Vec<Box<str>> = scope.split_ascii_whitespace().map(Box::from).collect();
        tokens.sort_unstable();
        tokens.dedup();
        Self(tokens)
    }

    /// Whether every token of `other` is in this set.
    pub fn covers(&self, other: &Self) -> bool {
        other.0.iter().all(|t| self.0.binary_search(t).is_ok())
    }

    /// Every token of either set.
    pub fn union(&self, other: &Self) -> Self {
        let mut tokens = self.0.clone();
        tokens.extend(other.0.iter().cloned());
        tokens.sort_unstable();
        tokens.dedup();
        Self(tokens)
    }

    /// The tokens of this set that `other` lacks.
    pub fn minus(&self, other: &Self) -> Self {
        Self(
            self.0
                .iter()
                .filter(|t| other.0.binary_search(t).is_err())
                .cloned()
                .collect(),
        )
    }

    /// Whether the set has no token.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_sets() {
        let held = Scopes::parse("b a  a");
        assert_eq!(held.to_string(), "a b");
        assert!(held.covers(&Scopes::parse("a")));
        assert!(held.covers(&Scopes::default()));
        assert!(!held.covers(&Scopes::parse("a c")));
        assert_eq!(held.union(&Scopes::parse("c a")).to_string(), "a b c");
        assert_eq!(Scopes::parse("a b c").minus(&held).to_string(), "c");
        assert!(held.minus(&held).is_empty());
    }
}
