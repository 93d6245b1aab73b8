//! Digests that tell whether a reloaded config differs from the running one, and which changed
//! keys need a restart.

use super::{Config, TlsIdentity};

/// SHA-256 over length-prefixed parts, so part boundaries cannot shift: the one in the oauth
/// crate.
pub(crate) use chaingate_oauth::digest::Sha256 as Digest;

impl Config {
    /// A digest of everything this config was built from: its text, overrides and the contents
    /// of every file it names (secrets, CAs, TLS identity). Equal digests, nothing to reload.
    pub fn digest(&self) -> [u8; 32] {
        let mut d = Digest::new();
        d.part(&self.source_digest);
        for domain in &self.domains {
            d.part(&domain.fingerprint());
        }
        for cert in self
            .routes
            .iter()
            .flat_map(|r| r.upstream.ca_certs.iter().flatten())
        {
            d.part(cert.as_ref());
        }
        if let Some(tls) = &self.tls {
            d.part(&tls_digest(tls));
        }
        d.finish()
    }

    /// Keys that only take effect at start; a reload that changes them keeps the old values.
    pub fn restart_only_changes(&self, next: &Self) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut check = |differs: bool, key: &'static str| {
            if differs {
                changed.push(key);
            }
        };
        check(self.listen != next.listen, "listen");
        check(self.admin_listen != next.admin_listen, "admin_listen");
        check(
            self.tls.as_ref().map(tls_digest) != next.tls.as_ref().map(tls_digest),
            "tls",
        );
        check(
            self.timeouts.header_read != next.timeouts.header_read,
            "timeouts.header_read",
        );
        check(
            self.timeouts.tls_handshake != next.timeouts.tls_handshake,
            "timeouts.tls_handshake",
        );
        check(
            self.limits.max_headers != next.limits.max_headers,
            "limits.max_headers",
        );
        check(
            self.limits.max_header_bytes != next.limits.max_header_bytes,
            "limits.max_header_bytes",
        );
        check(
            self.limits.max_connections != next.limits.max_connections,
            "limits.max_connections",
        );
        check(
            self.limits.max_h2_streams != next.limits.max_h2_streams,
            "limits.max_h2_streams",
        );
        check(
            self.shutdown.drain_delay != next.shutdown.drain_delay,
            "shutdown.drain_delay",
        );
        check(
            self.shutdown.drain_timeout != next.shutdown.drain_timeout,
            "shutdown.drain_timeout",
        );
        check(self.log.format != next.log.format, "log.format");
        check(
            self.log.access_log_buffer != next.log.access_log_buffer,
            "log.access_log_buffer",
        );
        check(
            self.log.access_log_flush != next.log.access_log_flush,
            "log.access_log_flush",
        );
        check(self.reload != next.reload, "reload");
        check(self.worker_threads != next.worker_threads, "worker_threads");
        check(self.shared_cache != next.shared_cache, "cache.shared");
        check(self.tracing != next.tracing, "tracing");
        changed
    }
}

/// What a TLS identity is made of, for change detection (the key is digested, never kept).
pub(super) fn tls_digest(identity: &TlsIdentity) -> [u8; 32] {
    let mut d = Digest::new();
    for cert in &identity.certs {
        d.part(cert.as_ref());
    }
    d.part(identity.key.secret_der());
    d.finish()
}
