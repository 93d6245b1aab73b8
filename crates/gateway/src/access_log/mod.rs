//! The access log: one line per request, formatted straight into a shared buffer and written in
//! batches by a thread of its own, as nginx's `access_log ... buffer= flush=` does.
//!
//! Going through `tracing` cost a formatted event, a channel message and a wake-up of the log
//! writer thread per request (one `write(2)` each). Here a request appends its line under a
//! short lock; the buffer is handed to the writer when it reaches `log.access_log_buffer` bytes
//! or when `log.access_log_flush` has passed, so the writer wakes once per batch. The lines are
//! the ones `tracing` wrote before (same fields, same plain and JSON shapes, target
//! `chaingate::access`), so log pipelines keep parsing them.
//!
//! Not lossy: when the writer falls behind by [`QUEUED_BATCHES`] batches, requests wait for it
//! rather than drop lines. Lines still buffered at shutdown are written before the process exits
//! ([`AccessLog::flush`] from the drain, and on drop).

use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use crate::config::LogFormat;

mod line;
#[cfg(test)]
mod tests;

pub(crate) use line::Entry;

/// Batches that may wait for the writer before requests block on it.
const QUEUED_BATCHES: usize = 16;

/// Where access log lines go: stderr for the binary, anything `Write` for an embedding program
/// or a test.
pub type Sink = Box<dyn Write + Send>;

/// The process's access log writer. Cheap to clone; the writer thread ends when the last clone
/// is dropped, after writing what was buffered.
#[derive(Clone)]
pub(crate) struct AccessLog {
    shared: Arc<Shared>,
}

struct Shared {
    format: LogFormat,
    /// A batch is handed over once it holds this many bytes; 0 hands over every line.
    batch_bytes: usize,
    buffer: Mutex<Vec<u8>>,
    /// Started with the first batch, so a gateway with the log off (or no traffic yet) has no
    /// writer thread and no buffer.
    writer: OnceLock<SyncSender<Message>>,
    sink: Mutex<Option<Sink>>,
}

enum Message {
    Batch(Vec<u8>),
    /// Answered once every batch before it is written.
    Written(SyncSender<()>),
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("format", &self.shared.format)
            .field("batch_bytes", &self.shared.batch_bytes)
            .finish_non_exhaustive()
    }
}

impl AccessLog {
    /// An access log writing to `sink`; its thread starts with the first batch.
    pub(crate) fn start(format: LogFormat, batch_bytes: usize, sink: Sink) -> Self {
        Self {
            shared: Arc::new(Shared {
                format,
                batch_bytes,
                buffer: Mutex::new(Vec::new()),
                writer: OnceLock::new(),
                sink: Mutex::new(Some(sink)),
            }),
        }
    }

    /// Appends one request's line; hands the batch to the writer once it is full.
    pub(crate) fn record(&self, entry: &Entry<'_>) {
        let now = SystemTime::now();
        let full = {
            let mut buffer = self.lock();
            if buffer.capacity() == 0 {
                buffer.reserve(self.capacity());
            }
            match self.shared.format {
                LogFormat::Plain => entry.plain(now, &mut buffer),
                LogFormat::Json => entry.json(now, &mut buffer),
            }
            (buffer.len() >= self.shared.batch_bytes)
                .then(|| std::mem::replace(&mut *buffer, Vec::with_capacity(self.capacity())))
        };
        if let Some(batch) = full {
            self.hand_over(batch);
        }
    }

    /// Hands whatever is buffered to the writer (the periodic flush, and the drain).
    pub(crate) fn flush(&self) {
        let batch = {
            let mut buffer = self.lock();
            if buffer.is_empty() {
                return;
            }
            std::mem::replace(&mut *buffer, Vec::with_capacity(self.capacity()))
        };
        self.hand_over(batch);
    }

    /// Flushes every `interval` (a task on the current runtime) for as long as the log is in
    /// use: the task holds no clone, so it does not keep the writer alive.
    pub(crate) fn flush_every(&self, interval: Duration) {
        let log = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(shared) = log.upgrade() else { return };
                AccessLog { shared }.flush();
            }
        });
    }

    /// Flushes, then blocks until the writer has written everything handed to it (shutdown).
    pub(crate) fn flush_and_wait(&self) {
        self.flush();
        self.shared.written();
    }

    fn capacity(&self) -> usize {
        self.shared.batch_bytes + 512
    }

    fn hand_over(&self, batch: Vec<u8>) {
        self.shared.send(Message::Batch(batch));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A panic mid-line leaves at worst a torn line; keep logging.
        self.shared
            .buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Shared {
    /// Hands `message` to the writer thread, starting it first if need be.
    fn send(&self, message: Message) {
        let writer = self.writer.get_or_init(|| {
            let (writer, messages) = sync_channel(QUEUED_BATCHES);
            let sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner).take();
            let started = sink.map(|sink| {
                std::thread::Builder::new()
                    .name("access-log".into())
                    .spawn(move || write_batches(messages, sink))
            });
            if let Some(Err(e)) = started {
                // Out of threads: the lines have nowhere to go; say so once.
                tracing::error!(error = %e, "cannot start the access log writer; lines are dropped");
            }
            writer
        });
        // The writer only stops when every sender is gone, so this fails only if it never started.
        let _ = writer.send(message);
    }

    /// Blocks until the writer has written every batch handed to it so far.
    fn written(&self) {
        if self.writer.get().is_none() {
            return;
        }
        let (done, written) = sync_channel(1);
        self.send(Message::Written(done));
        let _ = written.recv();
    }
}

/// The last clone gone (the process is exiting): what is buffered is written before it returns.
impl Drop for Shared {
    fn drop(&mut self) {
        let rest = std::mem::take(
            self.buffer
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if !rest.is_empty() {
            self.send(Message::Batch(rest));
            self.written();
        }
    }
}

/// The writer thread: one `write(2)` per batch, in order, until every sender is gone.
fn write_batches(messages: Receiver<Message>, mut sink: Sink) {
    for message in messages {
        match message {
            // A failed write (stderr closed under us) has nowhere else to be reported.
            Message::Batch(batch) => drop(sink.write_all(&batch).and_then(|()| sink.flush())),
            Message::Written(done) => drop(done.send(())),
        }
    }
}
