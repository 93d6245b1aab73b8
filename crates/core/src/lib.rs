//! Plumbing the chaingate gateway and its reference authority share: the one accept loop (with a
//! connection cap and a graceful drain), drain signalling, TLS, config helpers (TOML with key
//! paths in errors, `CHAINGATE_*`-style env overrides, the one duration parser, PEM files) and
//! metrics helpers.
//!
//! Nothing here knows OAuth: that is `chaingate-oauth`.

pub mod config;
pub mod drain;
pub mod keep_reading;
mod linger;
pub mod metrics;
mod pem;
pub mod serve;
pub mod tls;
