//! Inbound: the HTTP server settings of the data and admin ports, and the framing checks hyper
//! leaves to the application; the accept loop itself is `chaingate_core::serve`, shared with the
//! authority.

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use http::header::TRANSFER_ENCODING;
use http::Request;

use crate::config::{Limits, Timeouts};
use crate::error::Error;

/// Refuses a request whose body framing two parsers could read differently, before anything is
/// sent upstream. hyper decodes `Transfer-Encoding: chunked, chunked` (or two `chunked` lines) as
/// one chunked body; RFC 9112 §6.1 forbids applying chunked more than once, and an upstream that
/// reads it otherwise would see a different request boundary (request smuggling).
pub(crate) fn framing<B>(request: &Request<B>) -> Result<(), Error> {
    let mut values = request.headers().get_all(TRANSFER_ENCODING).iter();
    // The common case: no Transfer-Encoding, or one line that is exactly `chunked`.
    let Some(first) = values.next() else {
        return Ok(());
    };
    let mut chunked = 0;
    for value in std::iter::once(first).chain(values) {
        for coding in value.as_bytes().split(|&b| b == b',') {
            if coding.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                chunked += 1;
            }
        }
    }
    if chunked > 1 {
        return Err(Error::BadFraming("chunked applied more than once"));
    }
    Ok(())
}

/// hyper's own header-count limit when none is set (`proto::h1::role::DEFAULT_MAX_HEADERS`).
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// HTTP server settings shared by every connection of a listener.
pub(crate) fn http_builder(timeouts: &Timeouts, limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let mut http1 = builder.http1();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        // The head must fit the read buffer: past it hyper answers 431 and closes, before the
        // request reaches authn or costs an exchange.
        .max_buf_size(limits.max_header_bytes);
    // hyper parses into an uninitialised inline array of its default size, but fills a
    // `SmallVec` slot by slot for an explicit limit (~670 instructions a request, callgrind):
    // say the limit only when it differs. The refusal is the same 431 either way.
    if limits.max_headers != HYPER_DEFAULT_MAX_HEADERS {
        http1.max_headers(limits.max_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_h2_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(64)
        .max_local_error_reset_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_te(lines: &[&str]) -> Result<(), Error> {
        let mut builder = Request::post("/");
        for line in lines {
            builder = builder.header(TRANSFER_ENCODING, *line);
        }
        framing(&builder.body(()).expect("request"))
    }

    #[test]
    fn chunked_once_passes() {
        assert_eq!(with_te(&[]), Ok(()));
        assert_eq!(with_te(&["chunked"]), Ok(()));
        assert_eq!(with_te(&["gzip, chunked"]), Ok(()));
        assert_eq!(with_te(&["gzip", "chunked"]), Ok(()));
    }

    #[test]
    fn chunked_twice_is_refused_however_spelled() {
        for lines in [
            &["chunked, chunked"][..],
            &["chunked", "chunked"],
            &["Chunked ,chunked"],
            &["chunked, gzip, chunked"],
            &["gzip, CHUNKED", "chunked"],
        ] {
            assert!(
                matches!(with_te(lines), Err(Error::BadFraming(_))),
                "{lines:?}"
            );
        }
    }
}
