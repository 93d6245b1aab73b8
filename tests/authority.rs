//! Authority acceptance tests over real HTTP on loopback (see docs/authority.md).

#[path = "authority/support.rs"]
mod support;

#[path = "authority/chain.rs"]
mod chain;
#[path = "authority/clients.rs"]
mod clients;
#[path = "authority/endpoints.rs"]
mod endpoints;
#[path = "authority/exchange.rs"]
mod exchange;
#[path = "authority/introspected.rs"]
mod introspected;
#[path = "authority/jwks_fetch.rs"]
mod jwks_fetch;
