//! Environment overrides (`CHAINGATE_A__B`) and the effective config with secrets redacted.

use super::{parse_toml_with_env, Config, ConfigError};

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
    Config::from_toml_with_env(text, env.clone())?;
    let mut table: toml::Table = parse_toml_with_env(text, ENV_PREFIX, env)?;
    redact(&mut table);
    Ok(toml::to_string_pretty(&table).unwrap_or_default())
}

fn redact(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        match value {
            toml::Value::Table(t) => redact(t),
            toml::Value::Array(items) => items.iter_mut().for_each(|item| {
                if let toml::Value::Table(t) = item {
                    redact(t);
                }
            }),
            // Paths to secret files are fine to show; inline secrets are not.
            _ if key.contains("secret") && !key.ends_with("_file") => {
                *value = toml::Value::String("[redacted]".to_string());
            }
            _ => {}
        }
    }
}
