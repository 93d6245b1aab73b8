//! chaingate: a token-exchanging reverse-proxy sidecar.
#![doc = include_str!("../README.md")]

pub mod config;
pub mod secret;
