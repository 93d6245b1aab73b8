//! Configuration: TOML files parsed into serde structs, validated once into typed values.

mod parse;

pub use parse::{parse_toml, read_file, ConfigError};
