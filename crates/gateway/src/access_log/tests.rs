use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{AccessLog, Entry};
use crate::config::LogFormat;

/// The test-support log buffer: any `Write`, read back as text.
type Captured = chaingate_test_support::logs::Logs;

fn entry(path: &str, nanos: u64) -> Entry<'_> {
    Entry {
        route: "billing",
        method: "GET",
        path,
        status: 200,
        duration: Duration::from_nanos(nanos),
        cache: "hit",
    }
}

/// The line as `tracing-subscriber` wrote it before the access log had a writer of its own.
fn via_tracing(format: LogFormat, e: &Entry<'_>) -> String {
    let out = Captured::default();
    let sink = out.clone();
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || sink.clone());
    let emit = || {
        tracing::info!(
            target: "chaingate::access",
            route = %e.route,
            method = %e.method,
            path = e.path,
            status = e.status,
            duration_ms = e.duration.as_nanos() as f64 / 1e6,
            cache = e.cache,
        );
    };
    match format {
        LogFormat::Plain => tracing::subscriber::with_default(builder.finish(), emit),
        LogFormat::Json => {
            tracing::subscriber::with_default(builder.json().flatten_event(true).finish(), emit)
        }
    }
    out.text()
}

fn ours(format: LogFormat, e: &Entry<'_>) -> String {
    let mut out = Vec::new();
    let now = SystemTime::now();
    match format {
        LogFormat::Plain => e.plain(now, &mut out),
        LogFormat::Json => e.json(now, &mut out),
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn plain_lines_read_as_tracing_wrote_them() {
    for (path, nanos) in [
        ("/", 412_000),
        ("/a/b", 4_187_957),
        ("/q\"uote\\d", 3_000_000),
    ] {
        let e = entry(path, nanos);
        let (old, new) = (
            via_tracing(LogFormat::Plain, &e),
            ours(LogFormat::Plain, &e),
        );
        // Everything after the timestamp is the same, byte for byte.
        let after = |line: &str| line.split_once(' ').unwrap().1.to_string();
        assert_eq!(after(&new), after(&old), "{path}");
        assert_eq!(
            new.split_once(' ').unwrap().0.len(),
            "2026-12-02T00:33:34.863409Z".len()
        );
    }
}

#[test]
fn json_lines_hold_what_tracing_wrote() {
    for (path, nanos) in [("/", 412_000), ("/x\"\\\u{1}", 4_187_957)] {
        let e = entry(path, nanos);
        let old: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&via_tracing(LogFormat::Json, &e)).unwrap();
        let new: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&ours(LogFormat::Json, &e)).unwrap();
        let keys =
            |m: &serde_json::Map<String, serde_json::Value>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&new), keys(&old), "same fields in the same order");
        for (key, value) in &old {
            if key != "timestamp" {
                assert_eq!(&new[key], value, "{key}");
            }
        }
        assert_eq!(new["path"], path);
    }
}

#[test]
fn timestamps_are_rfc3339_utc_with_microseconds() {
    let at = |secs: u64, micros: u64| {
        let mut out = Vec::new();
        super::line::timestamp(
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros),
            &mut out,
        );
        String::from_utf8(out).unwrap()
    };
    assert_eq!(at(1_764_635_614, 863_409), "2025-12-02T00:33:34.863409Z");
    assert_eq!(at(951_782_400 + 86_399, 7), "2000-02-29T23:59:59.000007Z");
    assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
    assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
}

#[test]
fn durations_print_as_f64_millis_would() {
    for nanos in [
        0,
        100,
        999,
        1_000,
        412_000,
        1_000_000,
        4_187_957,
        12_345_678_901,
        7_000_001,
    ] {
        let mut out = Vec::new();
        super::line::millis(Duration::from_nanos(nanos), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{:?}", nanos as f64 / 1e6),
            "{nanos} ns"
        );
    }
}

#[test]
fn lines_wait_for_a_full_batch_or_a_flush_and_all_reach_the_sink_at_shutdown() {
    let out = Captured::default();
    let log = AccessLog::start(LogFormat::Plain, 1024, Box::new(out.clone()));
    log.record(&entry("/one", 1_000));
    log.flush_and_wait();
    assert_eq!(
        out.text().lines().count(),
        1,
        "a flush writes what is buffered"
    );

    // Below the batch size nothing is written until the next flush.
    log.record(&entry("/two", 1_000));
    log.shared.written();
    assert_eq!(out.text().lines().count(), 1, "still buffered");

    // Past it, the batch goes to the writer without a flush.
    for _ in 0..20 {
        log.record(&entry("/three", 1_000));
    }
    log.shared.written();
    let batched = out.text().lines().count();
    assert!(batched > 1 && batched < 22, "{batched} lines written");

    // The last clone dropped: the rest is written before the drop returns, nothing lost.
    drop(log);
    let text = out.text();
    assert_eq!(text.lines().count(), 22, "{text}");
    assert!(text
        .lines()
        .all(|l| l.contains("chaingate::access: route=billing")));
}

#[test]
fn a_batch_size_of_zero_writes_every_line_at_once() {
    let out = Captured::default();
    let log = AccessLog::start(LogFormat::Json, 0, Box::new(out.clone()));
    log.record(&entry("/one", 1_000));
    log.shared.written();
    assert_eq!(out.text().lines().count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_quiet_log_is_written_within_the_flush_interval() {
    let out = Captured::default();
    let log = AccessLog::start(LogFormat::Plain, 64 * 1024, Box::new(out.clone()));
    log.flush_every(Duration::from_secs(1));
    log.record(&entry("/quiet", 1_000));
    tokio::time::sleep(Duration::from_millis(900)).await;
    log.shared.written();
    assert_eq!(out.text(), "", "not before the interval");
    tokio::time::sleep(Duration::from_millis(200)).await;
    log.shared.written();
    assert_eq!(
        out.text().lines().count(),
        1,
        "written by the periodic flush"
    );
}
