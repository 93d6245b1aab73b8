//! One access log line, in the shapes `tracing-subscriber` gave it (plain and flattened JSON),
//! written into the batch without intermediate strings.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What one line says about a request. Never the query string: it may carry credentials a caller
/// should not have sent.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    pub(crate) route: &'a str,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) status: u16,
    pub(crate) duration: Duration,
    pub(crate) cache: &'static str,
}

impl Entry<'_> {
    /// `2026-12-02T00:33:34.863409Z  INFO chaingate::access: route=default method=GET path="/x" status=200 duration_ms=0.412 cache="hit"`
    pub(crate) fn plain(&self, now: SystemTime, out: &mut Vec<u8>) {
        timestamp(now, out);
        out.extend_from_slice(b"  INFO chaingate::access: route=");
        out.extend_from_slice(self.route.as_bytes());
        out.extend_from_slice(b" method=");
        out.extend_from_slice(self.method.as_bytes());
        out.extend_from_slice(b" path=\"");
        escaped(self.path, out);
        out.extend_from_slice(b"\" status=");
        number(u64::from(self.status), out);
        out.extend_from_slice(b" duration_ms=");
        millis(self.duration, out);
        out.extend_from_slice(b" cache=\"");
        out.extend_from_slice(self.cache.as_bytes());
        out.extend_from_slice(b"\"\n");
    }

    /// `{"timestamp":"…","level":"INFO","route":"default","method":"GET","path":"/x","status":200,"duration_ms":0.412,"cache":"hit","target":"chaingate::access"}`
    pub(crate) fn json(&self, now: SystemTime, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        timestamp(now, out);
        out.extend_from_slice(b"\",\"level\":\"INFO\",\"route\":\"");
        escaped(self.route, out);
        out.extend_from_slice(b"\",\"method\":\"");
        escaped(self.method, out);
        out.extend_from_slice(b"\",\"path\":\"");
        escaped(self.path, out);
        out.extend_from_slice(b"\",\"status\":");
        number(u64::from(self.status), out);
        out.extend_from_slice(b",\"duration_ms\":");
        millis(self.duration, out);
        out.extend_from_slice(b",\"cache\":\"");
        out.extend_from_slice(self.cache.as_bytes());
        out.extend_from_slice(b"\",\"target\":\"chaingate::access\"}\n");
    }
}

/// RFC 3339 UTC with microseconds, as `tracing-subscriber` prints it.
pub(super) fn timestamp(now: SystemTime, out: &mut Vec<u8>) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    padded(year as u64, 4, out);
    out.push(b'-');
    padded(month, 2, out);
    out.push(b'-');
    padded(day, 2, out);
    out.push(b'T');
    padded(of_day / 3600, 2, out);
    out.push(b':');
    padded(of_day / 60 % 60, 2, out);
    out.push(b':');
    padded(of_day % 60, 2, out);
    out.push(b'.');
    padded(u64::from(since.subsec_micros()), 6, out);
    out.push(b'Z');
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Milliseconds as `f64`'s `Debug` (what the plain shape used) shows a nanosecond count / 1e6:
/// no trailing zeros, `.0` when whole. Below 100 ns `Debug` would switch to an exponent; no
/// request is that quick, and plain decimals stay valid JSON.
pub(super) fn millis(duration: Duration, out: &mut Vec<u8>) {
    let nanos = duration.as_nanos().min(u128::from(u64::MAX)) as u64;
    number(nanos / 1_000_000, out);
    let mut fraction = nanos % 1_000_000;
    if fraction == 0 {
        out.extend_from_slice(b".0");
        return;
    }
    let mut digits = 6;
    while fraction.is_multiple_of(10) {
        fraction /= 10;
        digits -= 1;
    }
    out.push(b'.');
    padded(fraction, digits, out);
}

fn number(n: u64, out: &mut Vec<u8>) {
    padded(n, 1, out);
}

/// `n` in decimal, zero-padded to at least `width` digits (at most 20).
fn padded(mut n: u64, width: usize, out: &mut Vec<u8>) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i.min(digits.len() - width)..]);
}

/// The characters a quoted value cannot hold as they are, escaped as JSON does (which is also
/// how `Debug` shows them in the plain shape): quote, backslash and control characters.
fn escaped(value: &str, out: &mut Vec<u8>) {
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

const HEX: &[u8; 16] = b"0123456789abcdef";
