//! What the gateway meets while Prometheus watches: a token server that can be taken down, and
//! a steady stream of callers.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::support::get;

/// A TCP relay in front of the token server. Dropping it closes its port and every connection
/// through it, so the gateway meets a token server that is down (connection refused, reset),
/// not one that answers errors.
pub(super) struct Cuttable {
    /// Where the gateway reaches the token server.
    pub(super) addr: SocketAddr,
    relay: JoinHandle<()>,
}

impl Cuttable {
    pub(super) async fn start(to: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let relay = tokio::spawn(async move {
            // Owned by this task: aborting it drops the listener and aborts every connection.
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Self { addr, relay }
    }

    /// Takes the token server down; returns once the port is closed.
    pub(super) async fn cut(mut self) {
        self.relay.abort();
        let _ = (&mut self.relay).await;
    }
}

impl Drop for Cuttable {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

/// Callers while the test runs: every round one request with a new caller token (a cache miss,
/// so an exchange) and one with a steady token (a cache hit once exchanged). Bounded in time
/// and count; stops on drop.
pub(super) struct Traffic(JoinHandle<()>);

impl Traffic {
    pub(super) fn start(gateway: SocketAddr) -> Self {
        Self(tokio::spawn(async move {
            for round in 0..2_000u32 {
                let fresh = format!("prometheus-caller-{round}");
                get(gateway, &format!("/invoices/{round}"), Some(&fresh)).await;
                get(
                    gateway,
                    "/invoices/steady",
                    Some("prometheus-caller-steady"),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }))
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.0.abort();
    }
}
