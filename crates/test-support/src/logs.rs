//! Captured logs: one process-wide subscriber (trace level, JSON lines) for every test of a
//! binary. Thread-local subscribers miss events logged on other runtime threads, and a second
//! global one cannot be installed, so every suite that reads logs shares this one; a search
//! for secrets only gains from the other tests' lines.

use std::sync::{Arc, Mutex, OnceLock};

/// The shared log buffer.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

/// The buffer's length only: the lines are what the secret searches read, not for printing.
impl std::fmt::Debug for Logs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Logs");
        if let Ok(buf) = self.0.try_lock() {
            d.field("bytes", &buf.len());
        }
        d.finish_non_exhaustive()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// The logs of every test in this binary, from the first call on.
    pub fn global() -> Self {
        static LOGS: OnceLock<Logs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            let sink = logs.clone();
            tracing_subscriber::fmt()
                .json()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(move || sink.clone())
                .init();
            logs
        })
        .clone()
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}
