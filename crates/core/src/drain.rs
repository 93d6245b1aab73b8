//! Shutdown signalling: one [`Signal`] per stage of a drain, watched by any number of tasks.
//!
//! A drain is a tree walked from the root: the process signal starts it, each stage (reload
//! watcher, data listener, admin listener) is signalled in its turn, and a stage's listener
//! drains its own connections before the next one is told. Unlike a bare `watch<bool>`, a
//! [`Watch`] cannot be flipped back, and a dropped [`Signal`] counts as signalled, so no task
//! waits forever on an owner that is gone.

use tokio::sync::watch;

/// The sending half: signal once, and every [`Watch`] wakes.
#[derive(Debug)]
pub struct Signal(watch::Sender<bool>);

/// The receiving half, cheap to clone.
#[derive(Debug, Clone)]
pub struct Watch(watch::Receiver<bool>);

/// A new, unsignalled pair.
pub fn channel() -> (Signal, Watch) {
    let (tx, rx) = watch::channel(false);
    (Signal(tx), Watch(rx))
}

impl Signal {
    /// Signals every watcher (idempotent).
    pub fn signal(&self) {
        self.0.send_replace(true);
    }

    /// Another watcher of this signal.
    pub fn watch(&self) -> Watch {
        Watch(self.0.subscribe())
    }
}

impl Watch {
    /// Resolves once the signal is given (or its owner is gone).
    pub async fn signaled(&mut self) {
        let _ = self.0.wait_for(|signaled| *signaled).await;
    }

    /// Whether the signal has been given.
    pub fn is_signaled(&self) -> bool {
        *self.0.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_watcher_wakes_and_a_dropped_owner_counts() {
        let (signal, mut a) = channel();
        let mut b = signal.watch();
        assert!(!a.is_signaled());
        signal.signal();
        a.signaled().await;
        b.signaled().await;
        assert!(b.is_signaled());

        let (gone, mut orphan) = channel();
        drop(gone);
        orphan.signaled().await;
    }
}
