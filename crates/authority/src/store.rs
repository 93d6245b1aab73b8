//! A bounded in-memory set whose entries expire: used for revoked `jti`s and replayed assertions.

use std::collections::HashMap;
use std::sync::Mutex;

use chaingate_oauth::util::now_secs;

/// Keys remembered until a Unix time; expired entries are dropped on every insert.
#[derive(Debug)]
pub(crate) struct ExpiringSet {
    entries: Mutex<HashMap<String, u64>>,
    capacity: usize,
}

/// Why an insert did not happen.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InsertError {
    /// The key is already present and not yet expired.
    Present,
    /// The set is full of unexpired entries.
    Full,
}

impl ExpiringSet {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// Remembers `key` until `expires_at` (Unix seconds). Fails if present or full.
    pub(crate) fn insert(&self, key: String, expires_at: u64) -> Result<(), InsertError> {
        let now = now_secs();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.get(&key).is_some_and(|&exp| exp >= now) {
            return Err(InsertError::Present);
        }
        if entries.len() >= self.capacity {
            entries.retain(|_, exp| *exp >= now);
            if entries.len() >= self.capacity {
                return Err(InsertError::Full);
            }
        }
        entries.insert(key, expires_at);
        Ok(())
    }

    /// Remembers `key` until `expires_at` whatever the fill: a revocation that must not be lost
    /// (a replayed authorization code, RFC 6749 §4.1.2). When the set is full of live entries,
    /// the one closest to its own expiry makes room, and its expiry is returned so the caller can
    /// say so: that token is valid again for at most that long.
    pub(crate) fn insert_evicting(&self, key: String, expires_at: u64) -> Option<u64> {
        let now = now_secs();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut evicted = None;
        if !entries.contains_key(&key) && entries.len() >= self.capacity {
            entries.retain(|_, exp| *exp >= now);
            if entries.len() >= self.capacity {
                let soonest = entries
                    .iter()
                    .min_by_key(|(_, exp)| **exp)
                    .map(|(k, exp)| (k.clone(), *exp));
                if let Some((k, exp)) = soonest {
                    entries.remove(&k);
                    evicted = Some(exp);
                }
            }
        }
        let exp = entries.entry(key).or_insert(expires_at);
        *exp = (*exp).max(expires_at);
        evicted
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).is_some_and(|&exp| exp >= now_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_insert_is_refused_until_expiry() {
        let set = ExpiringSet::new(10);
        let later = now_secs() + 60;
        assert_eq!(set.insert("a".into(), later), Ok(()));
        assert_eq!(set.insert("a".into(), later), Err(InsertError::Present));
        assert!(set.contains("a"));
        assert_eq!(set.insert("old".into(), now_secs() - 10), Ok(()));
        assert!(!set.contains("old"));
    }

    #[test]
    fn full_set_drops_expired_entries_first() {
        let set = ExpiringSet::new(2);
        set.insert("x".into(), now_secs() - 5).unwrap();
        set.insert("y".into(), now_secs() + 60).unwrap();
        assert_eq!(set.insert("z".into(), now_secs() + 60), Ok(()));
        assert_eq!(
            set.insert("w".into(), now_secs() + 60),
            Err(InsertError::Full)
        );
    }

    #[test]
    fn a_revocation_that_must_take_evicts_the_soonest_to_expire() {
        let set = ExpiringSet::new(2);
        let now = now_secs();
        set.insert("far".into(), now + 600).unwrap();
        set.insert("near".into(), now + 60).unwrap();
        assert_eq!(set.insert("new".into(), now + 300), Err(InsertError::Full));
        assert_eq!(set.insert_evicting("new".into(), now + 300), Some(now + 60));
        assert!(set.contains("new") && set.contains("far") && !set.contains("near"));
        // Room, or already there: nothing is evicted.
        assert_eq!(set.insert_evicting("new".into(), now + 300), None);
        assert!(set.contains("far"));
    }
}
