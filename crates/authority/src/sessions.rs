//! Bounded in-memory flow state: sessions, pending requests, codes, granted scopes.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

use chaingate_oauth::util::now_secs;

/// Most entries each store keeps; beyond that new entries are refused (503).
const CAPACITY: usize = 10_000;

/// A map whose entries expire at a Unix time; bounded, expired entries pruned when full.
#[derive(Debug)]
pub(crate) struct TtlMap<K, V> {
    entries: Mutex<HashMap<K, (V, u64)>>,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> TtlMap<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, (V, u64)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts until `expires_at`; `false` if the map is full of live entries.
    pub(crate) fn insert(&self, key: K, value: V, expires_at: u64) -> bool {
        let now = now_secs();
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            entries.retain(|_, (_, exp)| *exp > now);
            if entries.len() >= self.capacity {
                return false;
            }
        }
        entries.insert(key, (value, expires_at));
        true
    }

    /// A copy of the live entry.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let now = now_secs();
        self.lock()
            .get(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| v.clone())
    }

    /// Removes and returns the live entry (single use).
    pub(crate) fn take(&self, key: &K) -> Option<V> {
        let now = now_secs();
        self.lock()
            .remove(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| v)
    }

    /// Runs `f` on the live entry under the lock (for check-and-mark operations).
    pub(crate) fn with<R>(&self, key: &K, f: impl FnOnce(Option<&mut V>) -> R) -> R {
        let now = now_secs();
        let mut entries = self.lock();
        let live = entries
            .get_mut(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| v);
        f(live)
    }
}

/// A browser session (cookie `cg_session`): who signed in, if anyone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Session {
    pub(crate) user: Option<String>,
}

/// A validated authorization request waiting for sign-in and consent. Its `Debug` leaves out the
/// session id and the anti-CSRF token (either lets a holder act as the user's browser) and the
/// client's `state` and PKCE challenge.
#[derive(Clone)]
pub(crate) struct Pending {
    /// The session it was started in: forms must come with that session's cookie.
    pub(crate) session: String,
    /// Anti-CSRF token echoed by the forms (compared in constant time).
    pub(crate) csrf: String,
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    /// Whether `redirect_uri` was in the request (then the token request must repeat it).
    pub(crate) redirect_given: bool,
    pub(crate) state: Option<String>,
    pub(crate) scope: BTreeSet<String>,
    pub(crate) include_granted: bool,
    pub(crate) code_challenge: Option<String>,
    /// A reciprocal consent (`GET /reciprocal/consent`): approval records the consent for
    /// `client_id` (the recipient) and shows a page; no code, no redirect.
    pub(crate) reciprocal: bool,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("session", &"[redacted]")
            .field("csrf", &"[redacted]")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("redirect_given", &self.redirect_given)
            .field("state", &self.state.as_ref().map(|_| "[redacted]"))
            .field("scope", &self.scope)
            .field("include_granted", &self.include_granted)
            .field(
                "code_challenge",
                &self.code_challenge.as_ref().map(|_| "[redacted]"),
            )
            .field("reciprocal", &self.reciprocal)
            .finish()
    }
}

/// An issued authorization code (stored by digest).
#[derive(Debug, Clone)]
pub(crate) struct CodeRecord {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) redirect_given: bool,
    pub(crate) code_challenge: Option<String>,
    pub(crate) user: String,
    pub(crate) scope: BTreeSet<String>,
    /// Set once redeemed: the refresh family and access token `jti`/`exp` it produced, so a
    /// second redemption can revoke them (RFC 6749 §4.1.2).
    pub(crate) used: Option<UsedCode>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct UsedCode {
    pub(crate) family: Option<String>,
    pub(crate) jti: Option<(String, u64)>,
}

/// All flow state of one authority.
#[derive(Debug)]
pub(crate) struct Flows {
    pub(crate) sessions: TtlMap<String, Session>,
    pub(crate) pending: TtlMap<String, Pending>,
    pub(crate) codes: TtlMap<[u8; 32], CodeRecord>,
    /// (user, client_id) → scopes granted so far (incremental authorization).
    consents: Mutex<HashMap<(String, String), BTreeSet<String>>>,
}

impl Default for Flows {
    fn default() -> Self {
        Self {
            sessions: TtlMap::new(CAPACITY),
            pending: TtlMap::new(CAPACITY),
            codes: TtlMap::new(CAPACITY),
            consents: Mutex::new(HashMap::new()),
        }
    }
}

impl Flows {
    fn consents(&self) -> MutexGuard<'_, HashMap<(String, String), BTreeSet<String>>> {
        self.consents.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Scopes `user` has granted `client_id` before.
    pub(crate) fn granted(&self, user: &str, client_id: &str) -> BTreeSet<String> {
        self.consents()
            .get(&(user.to_string(), client_id.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Adds to what `user` has granted `client_id`; `false` when the store is full.
    pub(crate) fn add_granted(
        &self,
        user: &str,
        client_id: &str,
        scope: &BTreeSet<String>,
    ) -> bool {
        let mut consents = self.consents();
        let key = (user.to_string(), client_id.to_string());
        if !consents.contains_key(&key) && consents.len() >= CAPACITY * 10 {
            return false;
        }
        consents
            .entry(key)
            .or_default()
            .extend(scope.iter().cloned());
        true
    }

    /// Forgets everything granted to a client (it was deleted).
    pub(crate) fn forget_client(&self, client_id: &str) {
        self.consents().retain(|(_, c), _| c != client_id);
    }
}

/// SHA-256 of a code or token: stores keep digests, never the bearer values.
pub(crate) fn digest(value: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// 256 bits of randomness, base64url (codes, refresh tokens, registration tokens, secrets).
pub(crate) fn random_token() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(&mut bytes).expect("system random number generator failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_map_takes_once_and_drops_expired() {
        let map: TtlMap<String, u32> = TtlMap::new(2);
        assert!(map.insert("a".into(), 1, now_secs() + 60));
        assert_eq!(map.take(&"a".to_string()), Some(1));
        assert_eq!(map.take(&"a".to_string()), None);
        assert!(map.insert("old".into(), 2, now_secs() - 1));
        assert_eq!(map.get(&"old".to_string()), None);
        assert!(map.insert("b".into(), 3, now_secs() + 60));
        assert!(map.insert("c".into(), 4, now_secs() + 60));
        assert!(!map.insert("d".into(), 5, now_secs() + 60));
    }

    #[test]
    fn pending_debug_shows_no_session_csrf_or_state() {
        let pending = Pending {
            session: "session-id-value".into(),
            csrf: "csrf-token-value".into(),
            client_id: "web".into(),
            redirect_uri: "https://app.example/cb".into(),
            redirect_given: true,
            state: Some("state-value".into()),
            scope: BTreeSet::from(["read".to_string()]),
            include_granted: false,
            code_challenge: Some("challenge-value".into()),
            reciprocal: false,
        };
        let shown = format!("{pending:?}");
        for value in ["session-id", "csrf-token", "state-value", "challenge-value"] {
            assert!(!shown.contains(value), "{shown}");
        }
        assert!(shown.contains("web") && shown.contains("read"), "{shown}");
    }
}
