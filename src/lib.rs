//! chaingate: a token-exchanging reverse-proxy sidecar.
#![doc = include_str!("../README.md")]

pub mod authority;
pub mod config;
pub mod secret;
