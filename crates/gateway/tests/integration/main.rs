//! The gateway end to end over real sockets: one test binary, a module per stage or feature.
//! Helpers (token servers, upstreams, clients, PKI) come from `chaingate-test-support`.

mod access_log;
mod assertion_file;
mod audit;
mod claims;
mod dpop_inbound;
mod dpop_outbound;
mod drain;
mod early_close;
mod fuzz_corpus;
mod gateway;
mod h2_floods;
mod hostile;
mod identity_chaining;
mod in_flight;
mod inbound_validation;
mod incremental_scopes;
mod profiles;
mod protected_resource;
mod protection;
mod reciprocal;
mod registration;
mod reload;
mod response_metadata;
mod route_targets;
mod secrets;
mod shared_cache;
mod shared_signals;
mod txn_token;
mod upstream_pool;
