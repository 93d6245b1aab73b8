//! OAuth and JOSE vocabulary shared by the chaingate gateway and its reference authority: grant
//! URNs, [`secret::Secret`], scope sets, JWT pre-parsing and verification, signing keys and JWKS,
//! RFC 8288 links, client authentication values, SHA-256 digests and random ids.
//!
//! This crate runs no server: it is the protocol, not the plumbing.

pub mod client_auth;
pub mod digest;
pub mod dpop;
pub mod grant;
pub mod jwt;
pub mod keys;
pub mod link;
pub mod remote;
pub mod scope;
pub mod secret;
pub mod util;
