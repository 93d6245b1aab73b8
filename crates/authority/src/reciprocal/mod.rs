//! Reciprocal OAuth (draft-ietf-oauth-reciprocal-04) in both roles.
//!
//! Party B (`redeem`): the `reciprocal` member in token responses, the
//! `urn:ietf:params:oauth:grant-type:reciprocal` grant, and redeeming the delivered code at
//! party A's token endpoint afterwards. Party A (`code`, `consent`): `POST /reciprocal/code`
//! mints an ordinary authorization code for party B when a policy or the user's own consent
//! (`GET /reciprocal/consent`) covers the scope.

pub(crate) mod code;
pub(crate) mod config;
pub(crate) mod consent;
pub(crate) mod redeem;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{watch, Semaphore};

use self::config::Redeemer;
use chaingate_oauth::remote::HttpClient;
use chaingate_oauth::secret::Secret;
use chaingate_oauth::util::now_secs;

pub(crate) use redeem::RECIPROCAL;

/// Most grants kept (one per user and party-A client).
const CAPACITY: usize = 10_000;

/// Most redemptions in flight at once: each is an outgoing request a client can trigger.
const MAX_IN_FLIGHT: usize = 64;

/// What party A granted this authority for one user: the result of redeeming a reciprocal code.
/// `Debug` shows no token (they are [`Secret`]s).
#[derive(Debug, Clone)]
pub struct ReciprocalGrant {
    /// The access token party A issued for the user (RFC 6749 §5.1), to call party A's APIs.
    pub access_token: Secret,
    /// The refresh token, if party A issued one: renews access after `expires_at` (RFC 6749 §6).
    pub refresh_token: Option<Secret>,
    /// The granted scope (the response's `scope`, else the scope that was asked for).
    pub scope: String,
    /// When the access token expires (Unix seconds), if party A said (`expires_in`).
    pub expires_at: Option<u64>,
}

impl ReciprocalGrant {
    /// Whether the entry may be dropped to make room: nothing left to use.
    fn spent(&self, now: u64) -> bool {
        self.refresh_token.is_none() && self.expires_at.is_some_and(|e| e <= now)
    }
}

/// Key: (user = `sub` of the presented access token, party-A client = its `client_id` here).
type Key = (String, String);

/// Party B's runtime: redemption settings and client, the grants, outcome counters.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub(crate) redeemer: Option<Arc<Redeemer>>,
    pub(crate) http: Option<HttpClient>,
    /// Each grant with the sequence number of the request that produced it.
    grants: Mutex<HashMap<Key, (ReciprocalGrant, u64)>>,
    /// Order of accepted requests, so a slow redemption cannot overwrite a newer code's grant.
    sequence: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    /// Total outcomes so far, for waiters.
    outcomes: watch::Sender<u64>,
    pub(crate) in_flight: Arc<Semaphore>,
}

impl Runtime {
    pub(crate) fn new(redeemer: Option<Arc<Redeemer>>) -> Result<Self, String> {
        let http = match &redeemer {
            Some(r) => Some(redeem::http_client(r)?),
            None => None,
        };
        Ok(Self {
            redeemer,
            http,
            grants: Mutex::new(HashMap::new()),
            sequence: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            outcomes: watch::Sender::new(0),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, (ReciprocalGrant, u64)>> {
        self.grants.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn next_sequence(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Keeps `grant` unless a newer request already stored one; `false` when the store is full.
    fn store(&self, key: Key, grant: ReciprocalGrant, sequence: u64) -> bool {
        let mut grants = self.lock();
        if let Some((_, newer)) = grants.get(&key).filter(|(_, s)| *s > sequence) {
            tracing::debug!(
                newer,
                "an older reciprocal redemption finished late; kept the newer grant"
            );
            return true;
        }
        if !grants.contains_key(&key) && grants.len() >= CAPACITY {
            let now = now_secs();
            grants.retain(|_, (g, _)| !g.spent(now));
            if grants.len() >= CAPACITY {
                return false;
            }
        }
        grants.insert(key, (grant, sequence));
        true
    }

    pub(crate) fn grant(&self, sub: &str, client_id: &str) -> Option<ReciprocalGrant> {
        self.lock()
            .get(&(sub.to_string(), client_id.to_string()))
            .map(|(g, _)| g.clone())
    }

    fn record(&self, ok: bool) {
        let counter = if ok { &self.ok } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        self.outcomes.send_modify(|n| *n += 1);
    }

    pub(crate) fn redemptions(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Waits until at least `count` redemptions have finished (either way) or `timeout` passes.
    pub(crate) async fn wait(&self, count: u64, timeout: std::time::Duration) -> (u64, u64) {
        let mut rx = self.outcomes.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|n| *n >= count)).await;
        self.redemptions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(token: &str) -> ReciprocalGrant {
        ReciprocalGrant {
            access_token: Secret::new(token),
            refresh_token: None,
            scope: "contacts".into(),
            expires_at: Some(now_secs() + 60),
        }
    }

    #[test]
    fn a_late_older_redemption_does_not_replace_a_newer_grant() {
        let rt = Runtime::new(None).unwrap();
        let key = ("alice".to_string(), "gw".to_string());
        assert!(rt.store(key.clone(), grant("second"), 2));
        assert!(rt.store(key.clone(), grant("first"), 1));
        let kept = rt.grant("alice", "gw").unwrap();
        assert!(kept.access_token.ct_eq("second"));
        assert!(rt.store(key, grant("third"), 3));
        assert!(rt.grant("alice", "gw").unwrap().access_token.ct_eq("third"));
    }

    #[test]
    fn debug_shows_no_token() {
        let shown = format!("{:?}", grant("very-secret-token"));
        assert!(!shown.contains("very-secret-token"), "{shown}");
    }
}
