//! PEM files named by the config: certificate chains and private keys.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, TlsIdentity};

/// Reads every PEM certificate in `path`, in file order (leaf first for a chain).
/// Errors, naming config key `key`, if the file is unreadable or holds no certificate.
pub fn load_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            ConfigError::key(
                key,
                format!("cannot read certificates from {}: {e}", path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(ConfigError::key(
            key,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

/// Loads a TLS identity: the certificate chain in `cert_file` and the private key in
/// `key_file` (PKCS#8, PKCS#1 or SEC1 PEM). `cert_key` and `key_key` are the config keys
/// named in the error when the respective file is bad.
pub fn load_identity(
    cert_file: &Path,
    key_file: &Path,
    cert_key: &str,
    key_key: &str,
) -> Result<TlsIdentity, ConfigError> {
    let certs = load_certs(cert_key, cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        ConfigError::key(
            key_key,
            format!("cannot read a private key from {}: {e}", key_file.display()),
        )
    })?;
    Ok(TlsIdentity { certs, key })
}
