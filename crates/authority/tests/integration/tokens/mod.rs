//! Authority acceptance tests over real HTTP on loopback (see docs/authority.md).

use chaingate_test_support::authority as support;

mod chain;
mod clients;
mod dpop;
mod endpoints;
mod exchange;
mod federated;
mod introspected;
mod jwks_fetch;
mod txn_token;
