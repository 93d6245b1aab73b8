//! The connection to Valkey/Redis: one server (redis-rs' reconnecting connection manager), a
//! Cluster, or the master the sentinels name; and the eviction subscriber beside it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Client, FromRedisValue};
use tokio::sync::broadcast;

use crate::config::{SharedCacheServer, SharedCacheSettings};

pub(super) enum Connection {
    Single(ConnectionManager),
    // Boxed: the cluster client is large, and the tier holds one connection either way.
    Cluster(Box<ClusterLink>),
    Sentinel(Box<SentinelLink>),
}

/// The master the sentinels name, found again after any failed command (a failover makes the
/// old master refuse writes or go away).
pub(super) struct SentinelLink {
    sentinel: tokio::sync::Mutex<redis::sentinel::SentinelClient>,
    current: Mutex<Option<redis::aio::MultiplexedConnection>>,
    config: redis::AsyncConnectionConfig,
}

impl SentinelLink {
    async fn connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let current = || {
            self.current
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        };
        if let Some(connection) = current() {
            return Ok(connection);
        }
        let mut sentinel = self.sentinel.lock().await;
        // Another task may have connected while this one waited.
        if let Some(connection) = current() {
            return Ok(connection);
        }
        let master = sentinel.async_get_client().await?;
        let connection = master
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(connection.clone());
        Ok(connection)
    }

    fn forget(&self) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// Where the eviction subscriber connects: a fixed server, or whichever master the sentinels
/// name at each (re)connection.
pub(super) enum PubSubSource {
    Server(Client),
    Sentinel(redis::sentinel::SentinelClient),
}

impl PubSubSource {
    async fn client(&mut self) -> redis::RedisResult<Client> {
        match self {
            Self::Server(client) => Ok(client.clone()),
            Self::Sentinel(sentinel) => sentinel.async_get_client().await,
        }
    }
}

pub(super) struct ClusterLink {
    client: redis::cluster::ClusterClient,
    connected: tokio::sync::OnceCell<ClusterConnection>,
}

/// Opens the connection for `settings` (lazily: nothing is dialled here) and the subscriber's.
pub(super) fn connect(
    settings: &SharedCacheSettings,
) -> redis::RedisResult<(Connection, PubSubSource)> {
    let certs = || redis::TlsCertificates {
        client_tls: None,
        root_cert: settings.ca_pem.clone(),
    };
    let open = |url: &str| match settings.ca_pem {
        Some(_) => Client::build_with_tls(url, certs()),
        None => Client::open(url),
    };
    Ok(match &settings.server {
        SharedCacheServer::Single(url) => {
            let client = open(url)?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(settings.connect_timeout))
                .set_response_timeout(Some(settings.timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(1));
            (
                Connection::Single(client.get_connection_manager_lazy(config)?),
                PubSubSource::Server(client),
            )
        }
        SharedCacheServer::Cluster(nodes) => {
            let mut builder = redis::cluster::ClusterClient::builder(nodes.clone())
                .connection_timeout(settings.connect_timeout)
                .response_timeout(settings.timeout)
                .retries(1);
            if settings.ca_pem.is_some() {
                builder = builder.certs(certs());
            }
            // Cluster nodes propagate PUBLISH to every node: any one serves subscribers.
            let first = open(&nodes[0])?;
            (
                Connection::Cluster(Box::new(ClusterLink {
                    client: builder.build()?,
                    connected: tokio::sync::OnceCell::new(),
                })),
                PubSubSource::Server(first),
            )
        }
        SharedCacheServer::Sentinel { nodes, service } => {
            let sentinel = || {
                redis::sentinel::SentinelClient::build(
                    nodes.clone(),
                    service.as_str(),
                    None,
                    redis::sentinel::SentinelServerType::Master,
                )
            };
            (
                Connection::Sentinel(Box::new(SentinelLink {
                    sentinel: tokio::sync::Mutex::new(sentinel()?),
                    current: Mutex::new(None),
                    config: redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(settings.connect_timeout))
                        .set_response_timeout(Some(settings.timeout)),
                })),
                PubSubSource::Sentinel(sentinel()?),
            )
        }
    })
}

/// One checked-out connection, whichever kind: commands and pipelines go through the same
/// `ConnectionLike`.
enum Checkout {
    Manager(ConnectionManager),
    Cluster(ClusterConnection),
    Multiplexed(redis::aio::MultiplexedConnection),
}

impl redis::aio::ConnectionLike for Checkout {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Manager(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Multiplexed(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Manager(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Self::Multiplexed(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Manager(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Multiplexed(c) => c.get_db(),
        }
    }
}

impl Connection {
    /// One command on the connection (connecting first if needed).
    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        let answer = cmd.query_async(&mut self.checkout().await?).await;
        self.after(answer.is_err());
        answer
    }

    /// A pipeline on the connection.
    pub(super) async fn query_pipe<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        let answer = pipe.query_async(&mut self.checkout().await?).await;
        self.after(answer.is_err());
        answer
    }

    async fn checkout(&self) -> redis::RedisResult<Checkout> {
        Ok(match self {
            Connection::Single(manager) => Checkout::Manager(manager.clone()),
            Connection::Cluster(link) => Checkout::Cluster(
                link.connected
                    .get_or_try_init(|| link.client.get_async_connection())
                    .await?
                    .clone(),
            ),
            Connection::Sentinel(link) => Checkout::Multiplexed(link.connection().await?),
        })
    }

    /// After a failed command, the sentinels are asked for the master again (it may have
    /// changed); the connection manager and the cluster client reconnect by themselves.
    fn after(&self, failed: bool) {
        if let (Connection::Sentinel(link), true) = (self, failed) {
            link.forget();
        }
    }
}

/// Receives the fleet's eviction messages until the tier is dropped, reconnecting as needed.
pub(super) async fn subscribe(
    mut source: PubSubSource,
    channel: String,
    replica: String,
    evicted: broadcast::Sender<Arc<str>>,
    connect_timeout: Duration,
) {
    loop {
        let connected = tokio::time::timeout(connect_timeout, async {
            let mut pubsub = source.client().await?.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        if let Ok(Ok(mut pubsub)) = connected {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                match payload.split_once(' ') {
                    Some((from, key)) if from != replica => {
                        let _ = evicted.send(Arc::from(key));
                    }
                    _ => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
