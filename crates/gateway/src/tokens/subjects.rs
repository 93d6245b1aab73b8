//! The subject index beside the cache: which cached entries were exchanged for whose token, so
//! a revocation event (OpenID CAEP `session-revoked`, `credential-change`) can evict them all.
//!
//! A caller's token (AT1) is indexed under the identifiers its claims carry, in the shapes of
//! RFC 9493 Subject Identifiers: `iss_sub` (`iss` + `sub`), `opaque` (`sub` alone) and `email`.
//! Keys are the cache's keyed digests: neither the subject nor the token is held.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::DomainTokens;
use crate::authn::InboundToken;
use crate::cache::Key;
use crate::fleet::SharedKey;

/// A subject, as a revocation event names it and a token's claims carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubjectId {
    /// RFC 9493 §3.2.3 `iss_sub`: the issuer and its subject.
    IssSub {
        /// The issuer.
        iss: String,
        /// The subject at that issuer.
        sub: String,
    },
    /// RFC 9493 §3.2.4 `opaque`, matched against a token's `sub` whoever issued it.
    Opaque(String),
    /// RFC 9493 §3.2.2 `email`, compared case-insensitively.
    Email(String),
}

impl SubjectId {
    fn key(&self) -> Key {
        match self {
            Self::IssSub { iss, sub } => Key::of(&[b"iss_sub", iss.as_bytes(), sub.as_bytes()]),
            Self::Opaque(id) => Key::of(&[b"opaque", id.as_bytes()]),
            Self::Email(email) => Key::of(&[b"email", email.to_ascii_lowercase().as_bytes()]),
        }
    }

    /// The identifiers a caller's token carries, if it is a JWT. Its signature is not checked
    /// here: a forged token names a subject only to have its own entry evicted.
    pub(crate) fn of_token(at1: InboundToken<'_>) -> Vec<Self> {
        let Ok((_, claims)) = chaingate_oauth::jwt::peek(at1.expose()) else {
            return Vec::new();
        };
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let mut ids = Vec::with_capacity(3);
        if let Some(sub) = text("sub") {
            if let Some(iss) = text("iss") {
                ids.push(Self::IssSub {
                    iss,
                    sub: sub.clone(),
                });
            }
            ids.push(Self::Opaque(sub));
        }
        if let Some(email) = text("email") {
            ids.push(Self::Email(email));
        }
        ids
    }
}

/// One cached entry of a subject: its key here and, with the fleet tier, in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Indexed {
    pub(super) key: Key,
    pub(super) shared: Option<SharedKey>,
}

/// Entries remembered per subject; beyond it the oldest is forgotten (and, if revoked, lives
/// to its expiry). A caller has one token per session, so a few per subject is the norm.
const PER_SUBJECT: usize = 256;

/// Subject digest → the entries exchanged for its tokens.
#[derive(Debug)]
pub(super) struct Subjects {
    index: moka::future::Cache<Key, Arc<Mutex<Vec<Indexed>>>>,
}

impl Subjects {
    /// An index for a cache of `max_entries`; an entry unused for a day is forgotten (no cached
    /// token lives that long).
    pub(super) fn new(max_entries: u64) -> Self {
        Self {
            index: moka::future::Cache::builder()
                .max_capacity(max_entries)
                .time_to_idle(Duration::from_secs(24 * 3600))
                .build(),
        }
    }

    /// Records that `entry` was exchanged for a token of the subjects `ids`.
    pub(super) async fn record(&self, ids: &[SubjectId], entry: &Indexed) {
        for id in ids {
            let entries = self
                .index
                .get_with(id.key(), async { Arc::default() })
                .await;
            let mut entries = entries
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !entries.contains(entry) {
                if entries.len() == PER_SUBJECT {
                    entries.remove(0);
                }
                entries.push(entry.clone());
            }
        }
    }

    /// Takes every entry of the subjects `ids` out of the index.
    pub(super) async fn take(&self, ids: &[SubjectId]) -> Vec<Indexed> {
        let mut all = Vec::new();
        for id in ids {
            if let Some(entries) = self.index.remove(&id.key()).await {
                let entries = entries
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for entry in entries.iter() {
                    if !all.contains(entry) {
                        all.push(entry.clone());
                    }
                }
            }
        }
        all
    }
}

impl DomainTokens {
    /// Records whose token the entry `key` was exchanged for (`[shared_signals]` only).
    pub(super) async fn index_subject(
        &self,
        key: Key,
        (scope, targets): (Option<&str>, Option<&crate::config::Targets>),
        at1: InboundToken<'_>,
    ) {
        let Some(subjects) = &self.subjects else {
            return;
        };
        let ids = SubjectId::of_token(at1);
        if ids.is_empty() {
            return;
        }
        let shared = self
            .shared
            .as_ref()
            .map(|shared| self.shared_key(&shared.tier, scope, targets, at1));
        subjects.record(&ids, &Indexed { key, shared }).await;
    }

    /// A revocation event for the subject `ids`: evicts every entry exchanged for its tokens,
    /// here and in the fleet tier, so the next request exchanges again and the token server
    /// decides. Returns how many live entries were evicted.
    pub(crate) async fn revoke(&self, ids: &[SubjectId]) -> u64 {
        let Some(subjects) = &self.subjects else {
            return 0;
        };
        let mut evicted = 0;
        for entry in subjects.take(ids).await {
            if self.cache.remove(&entry.key).await {
                evicted += 1;
            }
            self.grown.invalidate(&entry.key).await;
            if let (Some(shared), Some(skey)) = (&self.shared, &entry.shared) {
                // Every replica drops it, not only this one (they hear the eviction).
                shared.index.invalidate(skey.id()).await;
                shared.tier.evict(skey).await;
                shared.counters.evicted_here();
            }
        }
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> Indexed {
        Indexed {
            key: Key::of(&[&[n]]),
            shared: None,
        }
    }

    #[tokio::test]
    async fn an_entry_is_found_by_any_identifier_of_its_subject_and_taken_once() {
        let subjects = Subjects::new(100);
        let alice = [
            SubjectId::IssSub {
                iss: "https://a".into(),
                sub: "alice".into(),
            },
            SubjectId::Opaque("alice".into()),
            SubjectId::Email("Alice@Example.com".into()),
        ];
        subjects.record(&alice, &entry(1)).await;
        subjects.record(&alice, &entry(1)).await;
        subjects
            .record(&[SubjectId::Opaque("bob".into())], &entry(2))
            .await;
        let found = subjects
            .take(&[SubjectId::Email("alice@example.COM".into())])
            .await;
        assert_eq!(found, vec![entry(1)]);
        // Another issuer's alice is another subject.
        let other = SubjectId::IssSub {
            iss: "https://b".into(),
            sub: "alice".into(),
        };
        assert!(subjects.take(&[other]).await.is_empty());
        assert_eq!(subjects.take(&alice).await, vec![entry(1)]);
        assert!(subjects.take(&alice).await.is_empty());
        assert_eq!(
            subjects.take(&[SubjectId::Opaque("bob".into())]).await,
            vec![entry(2)]
        );
    }
}
