//! The slow external suites live in `tests/external`: Chromium, oidc-provider, deploy artifacts.
