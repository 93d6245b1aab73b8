//! Reciprocal OAuth (draft-ietf-oauth-reciprocal-04) between two in-process authorities over
//! real HTTP on loopback: B's reciprocal grant and redemption at A, A's reciprocal codes with
//! policies and user consent (see docs/authority.md).

#[path = "authority_reciprocal/support.rs"]
mod support;
#[allow(dead_code, unreachable_pub)]
#[path = "support/tls.rs"]
mod tls;

#[path = "authority_reciprocal/https_party_a.rs"]
mod https_party_a;
#[path = "authority_reciprocal/party_a.rs"]
mod party_a;
#[path = "authority_reciprocal/party_b.rs"]
mod party_b;
#[path = "authority_reciprocal/secrets.rs"]
mod secrets;
