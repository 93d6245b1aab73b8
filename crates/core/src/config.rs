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

/// A secret as the config file holds it (a client secret, an `extra_params` value): any string.
/// Its `Debug` shows the length only, and `config print` redacts every value deserialized as
/// one, wherever it sits, because the redaction follows this type rather than key names (see
/// [`secrets_of`]).
pub struct SecretText(String);

impl SecretText {
    /// The text, for building the validated config's own secret types.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretText([redacted; {} bytes])", self.0.len())
    }
}

impl<'de> serde::Deserialize<'de> for SecretText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        SEEN_SECRETS.with(|seen| {
            if let Some(seen) = seen.borrow_mut().as_mut() {
                seen.push(text.clone());
            }
        });
        Ok(Self(text))
    }
}

thread_local! {
    /// While [`secrets_of`] runs on this thread: every [`SecretText`] deserialized.
    static SEEN_SECRETS: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `parse` and returns what it returned, with the text of every [`SecretText`] it
/// deserialized: the values `config print` must not show.
pub fn secrets_of<T>(parse: impl FnOnce() -> T) -> (T, Vec<String>) {
    SEEN_SECRETS.with(|seen| *seen.borrow_mut() = Some(Vec::new()));
    let parsed = parse();
    let secrets = SEEN_SECRETS.with(|seen| seen.borrow_mut().take().unwrap_or_default());
    (parsed, secrets)
}

/// Parses TOML into `T`, reporting the dotted path of the key that failed.
pub fn parse_toml<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    parse_toml_with_env(text, "", std::iter::empty())
}

/// Parses TOML, applies environment overrides, then deserializes into `T`.
///
/// A variable `<prefix>A__B__0__C=value` sets key `a.b[0].c`. The value is read as a TOML value
/// when it parses as one (`true`, `42`, `"x"`, `["a","b"]`) and as a plain string otherwise; when
/// the key wants a string (a client secret of `12345678`, `0x1f`, `1e9`, `inf` or `true`), the
/// variable's text is used as it was written.
/// The environment is passed in, never read here, so tests need not touch the process's own.
pub fn parse_toml_with_env<T: DeserializeOwned>(
    text: &str,
    prefix: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| syntax_error(&e))?;
    // Overrides whose text was read as a number, boolean or the like: (key path, variable, text).
    let mut literal = Vec::new();
    if !prefix.is_empty() {
        for (name, value) in env {
            if let Some(path) = name.strip_prefix(prefix) {
                if let Some(key) = apply_override(&mut table, &name, path, &value, false)? {
                    literal.push((key, name.clone(), path.to_string(), value));
                }
            }
        }
    }
    loop {
        match deserialize(toml::Value::Table(table.clone())) {
            // The key wanted another type: if an override set it from a literal, it wanted the
            // variable's own text (a string). Each override is retried at most once.
            Err(ConfigError::Key { key, message }) if message.starts_with("invalid type") => {
                let Some(at) = literal.iter().position(|(k, ..)| *k == key) else {
                    return Err(ConfigError::Key { key, message });
                };
                let (_, name, path, value) = literal.swap_remove(at);
                apply_override(&mut table, &name, &path, &value, true)?;
            }
            other => return other,
        }
    }
}

fn deserialize<T: DeserializeOwned>(value: toml::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = without_value(&one_line(&inner.to_string()));
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

/// Sets the key `path` names to `raw` (as a string when `as_string`, else as a TOML literal if
/// it is one). Returns the key's dotted path when `raw` was read as a non-string literal.
fn apply_override(
    table: &mut toml::Table,
    var: &str,
    path: &str,
    raw: &str,
    as_string: bool,
) -> Result<Option<String>, ConfigError> {
    let segments: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    if segments.iter().any(String::is_empty) {
        return Err(ConfigError::key(
            var,
            "malformed override name; nest keys with __",
        ));
    }
    // A TOML literal if it is one, else the raw text as a string.
    let text = || toml::Value::String(raw.to_string());
    let value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) if !as_string => t.remove("v").unwrap_or_else(text),
        _ => text(),
    };
    let literal = !value.is_str();
    let mut root = toml::Value::Table(std::mem::take(table));
    let result = set_path(&mut root, &segments, value, var, "");
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    result.map(|key| literal.then_some(key))
}

/// Sets the value at `segments` under `node`; returns the key's dotted path (`a.b[0].c`), as
/// serde_path_to_error prints it.
fn set_path(
    node: &mut toml::Value,
    segments: &[String],
    value: toml::Value,
    var: &str,
    at: &str,
) -> Result<String, ConfigError> {
    let Some((first, rest)) = segments.split_first() else {
        return Ok(at.to_string());
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
                return Ok(here);
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
                return Ok(here);
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

/// serde quotes the offending value in its messages (``invalid type: integer `12345678`,
/// expected a string``, `unknown variant "x"`); the value may be a secret set in the wrong
/// place, so a config error keeps the kind and what was expected, never the value.
fn without_value(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: ", "unknown variant "] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        // What was expected is the type's own text; a value could itself contain ", expected".
        let expected = rest.rfind(", expected").map_or("", |at| &rest[at..]);
        let kind = rest[..rest.find(['`', '"']).unwrap_or(0)].trim_end();
        let prefix = prefix.trim_end_matches([' ', ':']);
        return match kind {
            "" => format!("{prefix}{expected}"),
            kind => format!("{prefix}: {kind}{expected}"),
        };
    }
    message.to_string()
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
    text.parse()
        .map_err(|_| serde::de::Error::custom("not an address like 127.0.0.1:8080"))
}

fn duration_text(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| "not a duration like 250ms, 30s, 5m, 1h or 1d".to_string())?;
    let scale = match unit {
        "ms" => return Ok(std::time::Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err("has no unit; use ms, s, m, h or d".to_string()),
    };
    n.checked_mul(scale)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| "is too large".to_string())
}

/// Parses `text` as a socket address (`host:port`, e.g. `127.0.0.1:8080`); the error names `key`.
pub fn socket_addr(key: &str, text: &str) -> Result<std::net::SocketAddr, ConfigError> {
    text.parse()
        .map_err(|_| ConfigError::key(key, "not an address like 127.0.0.1:8080"))
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

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct WithSecret {
        client_secret: String,
        port: u16,
        #[serde(default)]
        #[allow(dead_code)]
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Fast,
    }

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn a_string_key_takes_any_text_from_the_environment() {
        for raw in [
            "12345678",
            "0x1f",
            "1e9",
            "inf",
            "true",
            "[1, 2]",
            "2026-12-01",
        ] {
            let parsed: WithSecret = parse_toml_with_env(
                "client_secret = \"from-file\"\nport = 1\n",
                "T_",
                vars(&[("T_CLIENT_SECRET", raw), ("T_PORT", "8080")]),
            )
            .unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(parsed.client_secret, raw, "kept as written");
            // A key that wants a number still gets the number.
            assert_eq!(parsed.port, 8080);
        }
    }

    #[test]
    fn no_config_error_prints_the_value() {
        let cases = [
            // A secret-looking value where a number belongs, from the file and the environment.
            ("client_secret = \"x\"\nport = \"s3cr3t-value\"\n", vec![]),
            (
                "client_secret = \"x\"\nport = 1\n",
                vec![("T_PORT", "s3cr3t-value")],
            ),
            ("client_secret = \"x\"\nport = 99999999\n", vec![]),
            (
                "client_secret = \"x\"\nport = 1\nmode = \"s3cr3t-value\"\n",
                vec![],
            ),
            ("client_secret = 987654321\nport = 1\n", vec![]),
            ("client_secret = true\nport = 1\n", vec![]),
        ];
        for (text, env) in cases {
            let err = parse_toml_with_env::<WithSecret>(text, "T_", vars(&env)).unwrap_err();
            let line = err.to_string();
            for value in ["s3cr3t", "99999999", "987654321", "true"] {
                assert!(!line.contains(value), "{line}");
            }
            assert!(line.starts_with("config key `"), "names the key: {line}");
            assert!(line.contains("expected"), "says what was expected: {line}");
        }
    }

    #[test]
    fn serde_messages_keep_the_kind_and_the_expectation() {
        assert_eq!(
            without_value("invalid type: integer `12345678`, expected a string"),
            "invalid type: integer, expected a string"
        );
        assert_eq!(
            without_value("invalid type: string \"a, expected b\", expected u16"),
            "invalid type: string, expected u16"
        );
        assert_eq!(
            without_value("invalid value: integer `99999999`, expected u16"),
            "invalid value: integer, expected u16"
        );
        assert_eq!(
            without_value("unknown variant `hunter2`, expected `fast`"),
            "unknown variant, expected `fast`"
        );
        assert_eq!(
            without_value("missing field `port`"),
            "missing field `port`"
        );
    }
}
