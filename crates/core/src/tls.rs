//! rustls configurations, all on the aws-lc-rs provider.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::TlsIdentity;
use crate::keep_reading::TcpConnector;

/// What every pooled client connects with: TLS or plain by scheme over [`TcpConnector`].
pub type Connector = HttpsConnector<TcpConnector>;

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

/// hyper-util's pooled client over rustls (HTTP/1.1 and HTTP/2 by ALPN; plain http too, where
/// config validation allowed it), trusting `ca` or the system roots.
pub fn pooled_client<B>(
    ca: Option<&[CertificateDer<'static>]>,
    identity: Option<&TlsIdentity>,
    connect_timeout: Duration,
    pool_idle: Duration,
) -> Result<Client<Connector, B>, rustls::Error>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    let tls = client_config_with_identity(ca, identity)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(TcpConnector(http));
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(pool_idle)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https))
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
