//! rustls configurations, all on the aws-lc-rs provider.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::TlsIdentity;

/// Installs aws-lc-rs as the process-wide rustls provider. Call once, first thing in `main`.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want anyway.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Server config for inbound TLS, offering HTTP/2 and HTTP/1.1 by ALPN.
pub fn server_config(identity: &TlsIdentity) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(identity.certs.clone(), identity.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Client config trusting `ca` if given, else the system roots (loaded once per process).
pub fn client_config(
    ca: Option<&[CertificateDer<'static>]>,
) -> Result<ClientConfig, rustls::Error> {
    client_config_with_identity(ca, None)
}

/// Like [`client_config`], presenting `identity` as a client certificate (RFC 8705) if given.
pub fn client_config_with_identity(
    ca: Option<&[CertificateDer<'static>]>,
    identity: Option<&TlsIdentity>,
) -> Result<ClientConfig, rustls::Error> {
    let roots = match ca {
        Some(certs) => {
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots.add(cert.clone())?;
            }
            Arc::new(roots)
        }
        None => system_roots(),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    match identity {
        Some(identity) => {
            builder.with_client_auth_cert(identity.certs.clone(), identity.key.clone_key())
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "loaded system CA certificates");
            Arc::new(roots)
        })
        .clone()
}
