//! OAuth and JOSE building blocks shared by the gateway and the authority: signing keys and JWKS
//! key sets, JWT pre-parsing and verification, bounded fetches of remote documents.

pub(crate) mod jwt;
pub(crate) mod keys;
pub(crate) mod link;
pub(crate) mod remote;
pub(crate) mod util;
