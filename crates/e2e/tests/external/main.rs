//! The slow external suites: headless Chromium on the consent pages, oidc-provider (npm) as an
//! independent OAuth peer, the deploy artifacts (manifests, chart, monitoring) against a
//! running gateway, and a real Prometheus server scraping one with the shipped rules. They
//! install what they need (npm packages, Debian's prometheus) themselves.

mod authority_interop;
mod browser_consent;
mod deploy;
mod interop_matrix;
mod oidc_provider_smoke;
mod prometheus;
