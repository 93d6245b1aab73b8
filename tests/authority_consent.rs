//! The authority's user-facing side over real HTTP on loopback: authorization code flow with
//! sign-in and consent, incremental authorization, registration with intermediaries, response
//! metadata (see docs/authority.md).

#[path = "authority_consent/support.rs"]
mod support;

#[path = "authority_consent/config.rs"]
mod config;
#[path = "authority_consent/flow.rs"]
mod flow;
#[path = "authority_consent/incremental.rs"]
mod incremental;
#[path = "authority_consent/registration.rs"]
mod registration;
