//! The authority's user-facing side over real HTTP on loopback: authorization code flow with
//! sign-in and consent, incremental authorization, registration with intermediaries, response
//! metadata (see docs/authority.md).

use chaingate_test_support::consent as support;

mod config;
mod dpop_refresh;
mod flow;
mod incremental;
mod registration;
