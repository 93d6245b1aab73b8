//! The OTLP/HTTP export pipeline: the SDK's batch span processor, a parent-based ratio sampler,
//! and an HTTP client of our own (hyper with rustls, the same TLS stack as every other outbound
//! call) so no second HTTP or TLS stack is linked in.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_subscriber::filter::{FilterFn, Filtered};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::config::TracingSettings;

/// A collector's answer to an export is a small status message; more is not read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The TLS client for an `https://` collector could not be built.
    #[error("tracing: TLS client: {0}")]
    Tls(#[from] rustls::Error),
    /// The OTLP exporter refused its settings.
    #[error("tracing: OTLP exporter: {0}")]
    Exporter(String),
}

/// The running export pipeline; [`Pipeline::shutdown`] sends what is queued.
#[derive(Debug)]
pub struct Pipeline {
    provider: SdkTracerProvider,
}

impl Pipeline {
    /// Builds the exporter and the batch processor. Exports run on `runtime` (the processor's
    /// own thread only hands them over), so the collector's connections live in the same pool
    /// and timers as the rest of the process.
    pub fn start(
        settings: &TracingSettings,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, PipelineError> {
        let client = OtlpClient {
            client: chaingate_core::tls::pooled_client(
                settings.ca_certs.as_deref(),
                None,
                settings.timeout,
                Duration::from_secs(90),
            )?,
            headers: settings.headers.clone().into(),
            timeout: settings.timeout,
            runtime,
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.traces_url.to_string())
            .with_timeout(settings.timeout)
            .build()
            .map_err(|e| PipelineError::Exporter(e.to_string()))?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(settings.max_queue_size)
            .with_max_export_batch_size(settings.max_export_batch_size)
            .with_scheduled_delay(settings.scheduled_delay)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(
                BatchSpanProcessor::builder(exporter)
                    .with_batch_config(batch)
                    .build(),
            )
            // Parent-based: a caller's sampled flag is followed, so a trace is whole or absent.
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                    .build(),
            )
            .build();
        Ok(Self { provider })
    }

    /// The `tracing` layer that turns [`super::TARGET`] spans into exported spans. Events are
    /// left out: log lines are the log's, and an event's fields are not curated for export.
    pub fn layer<S>(&self) -> Filtered<impl Layer<S>, FilterFn, S>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("chaingate"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_level(false)
            .with_target(false)
            .with_filter(FilterFn::new(super::is_trace_span))
    }

    /// Sends the spans still queued and stops the processor. Blocks until the collector
    /// answered or the export timed out: call it off the runtime's threads (`spawn_blocking`).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "tracing: spans not exported at shutdown");
        }
    }
}

/// OTLP/HTTP over the gateway's hyper + rustls client.
#[derive(Debug)]
struct OtlpClient {
    client: Client<chaingate_core::tls::Connector, Full<Bytes>>,
    /// From `tracing.headers_file`; marked sensitive.
    headers: Arc<[(HeaderName, HeaderValue)]>,
    timeout: Duration,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (mut parts, body) = request.into_parts();
        for (name, value) in self.headers.iter() {
            parts.headers.insert(name.clone(), value.clone());
        }
        let request = Request::from_parts(parts, Full::new(body));
        let (client, timeout) = (self.client.clone(), self.timeout);
        // The batch processor polls this on its own thread, outside the runtime: hyper's
        // connection tasks and timers need the runtime, so the request runs there.
        let exchange = async move {
            let response = tokio::time::timeout(timeout, client.request(request))
                .await
                .map_err(|_| HttpError::from("OTLP export timed out"))??;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        self.runtime.spawn(exchange).await?
    }
}
