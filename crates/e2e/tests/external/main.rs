//! The slow external suites: headless Chromium on the consent pages, oidc-provider (npm) as an
//! independent OAuth peer, and the deploy artifacts (manifests, chart, monitoring) against a
//! running gateway. They install what they need (npm packages) themselves.

mod authority_interop;
mod browser_consent;
mod deploy;
mod interop_matrix;
mod oidc_provider_smoke;
