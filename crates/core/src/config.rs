//! Shared plumbing for TOML config files: parse with the offending key's path in every error.

use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::de::DeserializeOwned;

pub use crate::pem::{load_certs, load_identity};

/// A config problem, always naming the key it is about. `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file named by the config (or the config file itself) could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file that was being read.
        path: PathBuf,
        /// The I/O error the read failed with.
        #[source]
        source: std::io::Error,
    },
    /// A key is missing, malformed or has a value out of range.
    #[error("config key `{key}`: {message}")]
    Key {
        /// Dotted path of the offending key (`a.b[0].c`), or `(syntax)` / `(top level)`.
        key: String,
        /// What is wrong with the value, on one line.
        message: String,
    },
}

impl ConfigError {
    /// A problem with the value at the dotted path `key`; `message` says what is wrong with it.
    pub fn key(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Key {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Parses TOML into `T`, reporting the dotted path of the key that failed.
pub fn parse_toml<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    parse_toml_with_env(text, "", std::iter::empty())
}

/// Parses TOML, applies environment overrides, then deserializes into `T`.
///
/// A variable `<prefix>A__B__0__C=value` sets key `a.b[0].c`. The value is read as a TOML value
/// when it parses as one (`true`, `42`, `"x"`, `["a","b"]`) and as a plain string otherwise.
/// The environment is passed in, never read here, so tests need not touch the process's own.
pub fn parse_toml_with_env<T: DeserializeOwned>(
    text: &str,
    prefix: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| syntax_error(&e))?;
    if !prefix.is_empty() {
        for (name, value) in env {
            if let Some(path) = name.strip_prefix(prefix) {
                apply_override(&mut table, &name, path, &value)?;
            }
        }
    }
    deserialize(toml::Value::Table(table))
}

fn deserialize<T: DeserializeOwned>(value: toml::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = one_line(&inner.to_string());
        // toml's value deserializer names the key at the end; the error names it once, first.
        let message = message
            .strip_suffix(&format!(" in `{path}`"))
            .map_or(message.clone(), str::to_string);
        let key = if path == "." || path.is_empty() {
            unknown_field_name(&message).unwrap_or_else(|| "(top level)".to_string())
        } else {
            match unknown_field_name(&message) {
                Some(field) if !path.ends_with(&field) => format!("{path}.{field}"),
                _ => path,
            }
        };
        ConfigError::Key { key, message }
    })
}

fn apply_override(
    table: &mut toml::Table,
    var: &str,
    path: &str,
    raw: &str,
) -> Result<(), ConfigError> {
    let segments: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    if segments.iter().any(String::is_empty) {
        return Err(ConfigError::key(
            var,
            "malformed override name; nest keys with __",
        ));
    }
    // A TOML literal if it is one, else the raw text as a string.
    let value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let mut root = toml::Value::Table(std::mem::take(table));
    let result = set_path(&mut root, &segments, value, var, "");
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    result
}

fn set_path(
    node: &mut toml::Value,
    segments: &[String],
    value: toml::Value,
    var: &str,
    at: &str,
) -> Result<(), ConfigError> {
    let Some((first, rest)) = segments.split_first() else {
        return Ok(());
    };
    match node {
        toml::Value::Table(table) => {
            let here = if at.is_empty() {
                first.clone()
            } else {
                format!("{at}.{first}")
            };
            if rest.is_empty() {
                table.insert(first.clone(), value);
                return Ok(());
            }
            let child = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            set_path(child, rest, value, var, &here)
        }
        toml::Value::Array(items) => {
            let here = format!("{at}[{first}]");
            let child = first
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get_mut(i))
                .ok_or_else(|| ConfigError::key(&here, format!("{var} names no such entry")))?;
            if rest.is_empty() {
                *child = value;
                return Ok(());
            }
            set_path(child, rest, value, var, &here)
        }
        _ => Err(ConfigError::key(
            at,
            format!("{var} overrides inside a value that is not a table"),
        )),
    }
}

/// Reads a file into a string, with the path in the error.
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn syntax_error(e: &toml::de::Error) -> ConfigError {
    ConfigError::Key {
        key: "(syntax)".to_string(),
        message: one_line(e.message()),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// serde's message for `deny_unknown_fields` is "unknown field `x`, expected ...".
fn unknown_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// The one duration parser of every config: `250ms`, `30s`, `5m`, `1h`, `1d` (one whole number,
/// one unit). Errors name `key`.
pub fn parse_duration(key: &str, text: &str) -> Result<std::time::Duration, ConfigError> {
    duration_text(text).map_err(|message| ConfigError::key(key, message))
}

/// Serde's side of [`parse_duration`], for typed config structs
/// (`#[serde(deserialize_with = "chaingate_core::config::duration")]`): the same texts, the same
/// messages, and the key path comes from [`parse_toml`].
pub fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(d)?;
    duration_text(&text).map_err(serde::de::Error::custom)
}

/// Serde for a listen address, with the message the config has always given.
pub fn listen_addr<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::net::SocketAddr, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!("`{text}` is not an address like 127.0.0.1:8080"))
    })
}

fn duration_text(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 250ms, 30s, 5m, 1h or 1d"))?;
    let scale = match unit {
        "ms" => return Ok(std::time::Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{text}` has no unit; use ms, s, m, h or d")),
    };
    n.checked_mul(scale)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Parses `text` as a socket address (`host:port`, e.g. `127.0.0.1:8080`); the error names `key`.
pub fn socket_addr(key: &str, text: &str) -> Result<std::net::SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::key(
            key,
            format!("`{text}` is not an address like 127.0.0.1:8080"),
        )
    })
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`, separated by single spaces.
pub fn validate_scope(key: &str, scope: &str) -> Result<(), ConfigError> {
    let ok = !scope.is_empty()
        && scope.split(' ').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(ConfigError::key(
            key,
            "not a space-separated list of RFC 6749 scope tokens",
        ))
    }
}

/// A certificate chain and its key, loaded from PEM files.
pub struct TlsIdentity {
    /// The chain, leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certs", &self.certs.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[allow(dead_code)]
        domains: BTreeMap<String, Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        port: u16,
    }

    #[test]
    fn unknown_nested_key_is_named_with_its_path() {
        let err = parse_toml::<Outer>("[domains.billing]\nport = 1\nprot = 2\n").unwrap_err();
        let line = err.to_string();
        assert!(line.contains("domains.billing.prot"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("k", "250ms").unwrap().as_millis(), 250);
        assert_eq!(parse_duration("k", "5m").unwrap().as_secs(), 300);
        assert!(parse_duration("k", "5")
            .unwrap_err()
            .to_string()
            .contains("`k`"));
        assert!(parse_duration("k", "x5s").is_err());
        // One parser for both products: days, and no silent wrap-around.
        assert_eq!(parse_duration("k", "1d").unwrap().as_secs(), 86_400);
        assert!(parse_duration("k", "99999999999999999d").is_err());
    }

    #[test]
    fn wrong_type_is_named_with_its_path() {
        let err = parse_toml::<Outer>("[domains.billing]\nport = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("domains.billing.port"), "{err}");
    }
}
