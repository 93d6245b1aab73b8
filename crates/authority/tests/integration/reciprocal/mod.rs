//! Reciprocal OAuth (draft-ietf-oauth-reciprocal-04) between two in-process authorities over
//! real HTTP on loopback: B's reciprocal grant and redemption at A, A's reciprocal codes with
//! policies and user consent (see docs/authority.md).

use chaingate_test_support::parties as support;
use chaingate_test_support::tls;

mod https_party_a;
mod party_a;
mod party_b;
mod secrets;
