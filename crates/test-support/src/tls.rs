//! A throwaway CA and server certificate for TLS tests.

use std::path::PathBuf;

/// Paths and the CA's public PEM only; the private keys stay in the files.
#[derive(Debug)]
pub struct TestPki {
    pub dir: tempfile::TempDir,
    /// A client certificate and key signed by the same CA (for mutual TLS).
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    pub ca_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: PathBuf,
}

/// A CA and a certificate for `localhost` / 127.0.0.1 signed by it, written to a temp dir.
pub fn pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    // Distinct subject names: OpenSSL (node, an independent peer) takes a leaf whose issuer
    // equals its subject for self-signed, and rcgen gives every certificate the same default.
    let named = |params: &mut CertificateParams, cn: &str| {
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    named(&mut ca_params, "chaingate test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    named(&mut params, "localhost");
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.signed_by(&key, &issuer).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["gateway-client".to_string()]).unwrap();
    named(&mut client_params, "gateway-client");
    let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cert_file = dir.path().join("tls.crt");
    let key_file = dir.path().join("tls.key");
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let client_cert_file = dir.path().join("client.crt");
    let client_key_file = dir.path().join("client.key");
    std::fs::write(&client_cert_file, client_cert.pem()).unwrap();
    std::fs::write(&client_key_file, client_key.serialize_pem()).unwrap();
    TestPki {
        ca_pem: ca.pem(),
        dir,
        cert_file,
        key_file,
        ca_file,
        client_cert_file,
        client_key_file,
    }
}

impl TestPki {
    /// The `[tls]` section that makes the gateway serve this certificate.
    pub fn gateway_tls_section(&self) -> String {
        format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            self.cert_file.display().to_string(),
            self.key_file.display().to_string()
        )
    }

    /// Trust roots holding only this CA.
    pub fn roots(&self) -> rustls::RootCertStore {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_file(&self.ca_file).unwrap())
            .unwrap();
        roots
    }
}
