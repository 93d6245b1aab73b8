//! Grant type and assertion type URNs, spelled once for the gateway and the authority.

/// The chain grant (draft-hunt-oauth-chain-01 §2).
pub const CHAIN_GRANT: &str = "http://oauth.net/grant_type/chain";
/// RFC 8693 §2.1 token exchange.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 7523 §2.1 JWT bearer assertion grant.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// draft-ietf-oauth-reciprocal-04 §4 reciprocal grant.
pub const RECIPROCAL_GRANT: &str = "urn:ietf:params:oauth:grant-type:reciprocal";
/// RFC 7523 §2.2 client assertion type.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
