//! `[cache.shared]`: the fleet-wide second tier on Valkey/Redis, validated once here.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use chaingate_core::config::{duration, SecretText};

/// `[cache.shared]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSharedCache {
    /// `redis://` or `rediss://` (TLS with rustls), one server (or a Valkey/Redis proxy).
    /// Secret-typed: a URL may carry a password, so `config print` redacts it.
    pub(crate) url: Option<SecretText>,
    /// Redis Cluster: seed nodes, instead of `url`.
    #[serde(default)]
    pub(crate) cluster_nodes: Vec<SecretText>,
    /// Redis Sentinel: the sentinels, instead of `url` (with `sentinel_service`).
    #[serde(default)]
    pub(crate) sentinel_nodes: Vec<SecretText>,
    /// The master's name the sentinels monitor.
    pub(crate) sentinel_service: Option<String>,
    /// PEM roots for `rediss://` instead of the system's.
    pub(crate) ca_file: Option<PathBuf>,
    #[serde(default = "default_prefix")]
    pub(crate) key_prefix: String,
    pub(crate) encryption_key_file: PathBuf,
    #[serde(default = "default_lease_ttl", deserialize_with = "duration")]
    pub(crate) lease_ttl: Duration,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub(crate) timeout: Duration,
    #[serde(default = "default_connect_timeout", deserialize_with = "duration")]
    pub(crate) connect_timeout: Duration,
    #[serde(default = "default_breaker_failures")]
    pub(crate) breaker_failures: u32,
    #[serde(default = "default_breaker_open", deserialize_with = "duration")]
    pub(crate) breaker_open: Duration,
}

fn default_prefix() -> String {
    "chaingate:".into()
}
fn default_lease_ttl() -> Duration {
    Duration::from_secs(2)
}
fn default_timeout() -> Duration {
    Duration::from_millis(100)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_breaker_failures() -> u32 {
    3
}
fn default_breaker_open() -> Duration {
    Duration::from_secs(5)
}

/// Where the shared tier lives.
#[derive(Clone, PartialEq, Eq)]
pub enum SharedCacheServer {
    /// One server: `redis://` or `rediss://`.
    Single(String),
    /// Redis Cluster seed nodes.
    Cluster(Vec<String>),
    /// Redis Sentinel: the sentinels and the monitored master's name.
    Sentinel {
        /// Sentinel URLs.
        nodes: Vec<String>,
        /// The master's name.
        service: String,
    },
}

/// URLs may carry a password: only the kind is shown.
impl std::fmt::Debug for SharedCacheServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Single(_) => f.write_str("Single(..)"),
            Self::Cluster(nodes) => write!(f, "Cluster({} nodes)", nodes.len()),
            Self::Sentinel { nodes, service } => {
                write!(f, "Sentinel({service:?}, {} sentinels)", nodes.len())
            }
        }
    }
}

/// `[cache.shared]`, validated: the key material read, the URLs checked.
#[derive(Clone, PartialEq)]
pub struct SharedCacheSettings {
    /// The server or cluster.
    pub server: SharedCacheServer,
    /// PEM roots for TLS, read from `ca_file`.
    pub ca_pem: Option<Vec<u8>>,
    /// Prepended to every key and channel, so fleets can share a server.
    pub key_prefix: String,
    /// The 32-byte key every value is sealed with and every Redis key derived from.
    pub encryption_key: [u8; 32],
    /// How long one replica's claim to exchange for a key holds; others wait at most this.
    pub lease_ttl: Duration,
    /// Deadline of each Redis command: past it the request goes on without the shared tier.
    pub timeout: Duration,
    /// Deadline of a connection attempt.
    pub connect_timeout: Duration,
    /// Consecutive failures that open the breaker (Redis skipped) ...
    pub breaker_failures: u32,
    /// ... for this long.
    pub breaker_open: Duration,
}

/// URLs may carry a password (`redis://:pw@host`): never printed.
impl std::fmt::Debug for SharedCacheSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCacheSettings")
            .field("key_prefix", &self.key_prefix)
            .field("lease_ttl", &self.lease_ttl)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Validates `[cache.shared]`.
pub(crate) fn shared_cache(file: &FileSharedCache) -> Result<SharedCacheSettings, ConfigError> {
    let key = |field: &str| format!("cache.shared.{field}");
    let urls = |nodes: &[SecretText], field: &str| {
        nodes
            .iter()
            .map(|n| check_url(&key(field), n.expose()).map(|()| n.expose().to_owned()))
            .collect::<Result<Vec<_>, _>>()
    };
    let chosen = usize::from(file.url.is_some())
        + usize::from(!file.cluster_nodes.is_empty())
        + usize::from(!file.sentinel_nodes.is_empty());
    if chosen != 1 {
        return Err(ConfigError::key(
            key("url"),
            "give exactly one of url, cluster_nodes or sentinel_nodes",
        ));
    }
    let server = if let Some(url) = &file.url {
        check_url(&key("url"), url.expose())?;
        SharedCacheServer::Single(url.expose().to_owned())
    } else if !file.cluster_nodes.is_empty() {
        SharedCacheServer::Cluster(urls(&file.cluster_nodes, "cluster_nodes")?)
    } else {
        let Some(service) = file.sentinel_service.clone().filter(|s| !s.is_empty()) else {
            return Err(ConfigError::key(
                key("sentinel_service"),
                "required with sentinel_nodes: the monitored master's name",
            ));
        };
        SharedCacheServer::Sentinel {
            nodes: urls(&file.sentinel_nodes, "sentinel_nodes")?,
            service,
        }
    };
    let ca_pem = file
        .ca_file
        .as_ref()
        .map(|path| {
            std::fs::read(path).map_err(|e| {
                ConfigError::key(
                    key("ca_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })
        })
        .transpose()?;
    let encryption_key = read_key(&key("encryption_key_file"), &file.encryption_key_file)?;
    if file.key_prefix.is_empty() || file.key_prefix.contains(['{', '}']) {
        return Err(ConfigError::key(
            key("key_prefix"),
            "must be non-empty, without `{` or `}` (they select a Redis Cluster slot)",
        ));
    }
    let positive = |field: &str, d: Duration| {
        if d.is_zero() {
            Err(ConfigError::key(key(field), "must be more than zero"))
        } else {
            Ok(d)
        }
    };
    Ok(SharedCacheSettings {
        server,
        ca_pem,
        key_prefix: file.key_prefix.clone(),
        encryption_key,
        lease_ttl: positive("lease_ttl", file.lease_ttl)?,
        timeout: positive("timeout", file.timeout)?,
        connect_timeout: positive("connect_timeout", file.connect_timeout)?,
        breaker_failures: match file.breaker_failures {
            0 => {
                return Err(ConfigError::key(
                    key("breaker_failures"),
                    "must be at least 1",
                ))
            }
            n => n,
        },
        breaker_open: positive("breaker_open", file.breaker_open)?,
    })
}

fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    // The URL may hold a password: never echoed.
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(ConfigError::key(key, "must be a redis:// or rediss:// URL"));
    }
    redis::Client::open(url)
        .map(drop)
        .map_err(|_| ConfigError::key(key, "is not a usable Redis URL"))
}

/// The key file: 32 bytes, raw, as 64 hex digits or as base64 (surrounding whitespace ignored).
fn read_key(key: &str, path: &std::path::Path) -> Result<[u8; 32], ConfigError> {
    use base64::Engine as _;
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::key(key, format!("cannot read {}: {e}", path.display())))?;
    let refused = || {
        ConfigError::key(
            key,
            "must hold 32 bytes: raw, 64 hex digits or base64 (e.g. `openssl rand -base64 32`)",
        )
    };
    if let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) {
        return Ok(raw);
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| refused())?.trim();
    let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| refused())?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| refused())?
    };
    <[u8; 32]>::try_from(decoded.as_slice()).map_err(|_| refused())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_takes_raw_hex_or_base64_and_refuses_other_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        for content in [
            key.to_vec(),
            key.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes(),
            format!(
                "{}\n",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key)
            )
            .into_bytes(),
        ] {
            std::fs::write(&path, content).unwrap();
            assert_eq!(read_key("k", &path).unwrap(), key);
        }
        std::fs::write(&path, [7u8; 16]).unwrap();
        let e = read_key("cache.shared.encryption_key_file", &path).unwrap_err();
        assert!(
            e.to_string().contains("cache.shared.encryption_key_file"),
            "{e}"
        );
    }
}
