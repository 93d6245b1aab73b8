//! Environment overrides (`CHAINGATE_A__B`) and the effective config with secrets redacted.

use super::{parse_toml_with_env, Config, ConfigError};
use chaingate_core::config::secrets_of;

/// Environment variables with this prefix override config keys.
pub const ENV_PREFIX: &str = "CHAINGATE_";

/// Variables that configure the command line, not the config file.
const NOT_KEYS: [&str; 2] = ["CHAINGATE_CONFIG", "CHAINGATE_LOG_FORMAT"];

pub(super) fn config_env(
    env: impl IntoIterator<Item = (String, String)>,
) -> impl Iterator<Item = (String, String)> {
    env.into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX) && !NOT_KEYS.contains(&name.as_str()))
}

/// The effective config (file plus `env` overrides) as TOML, every secret value redacted.
/// Fails like [`Config::from_toml_with_env`] if the result is not a valid config.
pub fn effective_toml(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<String, ConfigError> {
    let env: Vec<_> = config_env(env).collect();
    // The validated load says which values are secrets: every one deserialized as a secret type.
    let (loaded, secrets) = secrets_of(|| Config::from_toml_with_env(text, env.clone()));
    loaded?;
    let mut table: toml::Table = parse_toml_with_env(text, ENV_PREFIX, env)?;
    redact_table(&mut table, &secrets);
    Ok(toml::to_string_pretty(&table).unwrap_or_default())
}

/// Replaces every string that is one of `secrets` (wherever it sits), and any inline value of a
/// key named like a secret, with `[redacted]`.
fn redact_table(table: &mut toml::Table, secrets: &[String]) {
    for (key, value) in table.iter_mut() {
        // Paths to secret files are fine to show; inline secrets are not.
        if key.contains("secret") && !key.ends_with("_file") && !value.is_table() {
            *value = redacted();
        } else {
            redact_value(value, secrets);
        }
    }
}

fn redact_value(value: &mut toml::Value, secrets: &[String]) {
    match value {
        toml::Value::Table(t) => redact_table(t, secrets),
        toml::Value::Array(items) => items.iter_mut().for_each(|v| redact_value(v, secrets)),
        toml::Value::String(s) if secrets.iter().any(|secret| secret == s) => *value = redacted(),
        _ => {}
    }
}

fn redacted() -> toml::Value {
    toml::Value::String("[redacted]".to_string())
}
