//! The process's [`Metrics`] in the Prometheus text exposition format (OpenMetrics),
//! encoded by `prometheus-client`, and an optional HTTP endpoint serving them.
//!
//! The endpoint is a small HTTP/1.1 responder on a tokio listener: `GET /metrics`
//! answers the exposition, anything else 404. It needs no web framework; a process that
//! already runs one can serve [`encode_metrics`] from its own route instead.

use std::fmt::Write as _;
use std::net::SocketAddr;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::application::metrics::{all_series, Metrics, OpKind, PROMETHEUS_BOUNDS};
use crate::error::{Error, Result};

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The process's metrics in the OpenMetrics text format (which Prometheus reads).
pub fn encode_metrics() -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(AegisCollector));
    let mut out = String::new();
    // Writing into a String cannot fail; a collector error would be a bug of ours.
    if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!(%error, "cannot encode metrics");
    }
    out
}

/// Serves [`encode_metrics`] at `GET /metrics` on `address` (port 0 picks a free port)
/// until the returned handle is dropped or stopped. Turns recording on
/// ([`Metrics::enable`]).
///
/// # Errors
/// [`ErrorKind::Connection`](crate::ErrorKind::Connection) when the address cannot be
/// bound.
///
/// # Examples
/// ```no_run
/// # async fn run() -> aegis_sdk::Result<()> {
/// let endpoint = aegis_sdk::adapters::prometheus::serve_prometheus("0.0.0.0:9464").await?;
/// tracing::info!(address = %endpoint.local_addr(), "metrics at /metrics");
/// # Ok(()) }
/// ```
pub async fn serve_prometheus(address: &str) -> Result<PrometheusEndpoint> {
    let listener = TcpListener::bind(address).await.map_err(|e| {
        Error::connection(format!("cannot listen on {address}: {e}")).with_source(e)
    })?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| Error::connection(format!("listener has no address: {e}")).with_source(e))?;
    Metrics::enable();
    tracing::info!(%local_addr, "serving Prometheus metrics");
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(answer(stream));
                }
                Err(error) => {
                    tracing::debug!(%error, "metrics endpoint accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(PrometheusEndpoint { local_addr, task })
}

/// A running metrics endpoint; dropping it stops it.
#[derive(Debug)]
pub struct PrometheusEndpoint {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl PrometheusEndpoint {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL of the exposition, `http://{address}/metrics`.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.local_addr)
    }

    /// Stops listening.
    pub fn stop(self) {}
}

impl Drop for PrometheusEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Largest request head read; scrapers send a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;

async fn answer(mut stream: TcpStream) {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    let complete = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buffer))
            .await
        {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break false,
            Ok(Ok(n)) => head.extend_from_slice(&buffer[..n]),
        }
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if head.len() > MAX_HEAD {
            break false;
        }
    };
    if !complete {
        return;
    }
    let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let path = path.split(|&b| b == b'?').next().unwrap_or_default();

    let (status, content_type, body) = match (method, path) {
        (b"GET", b"/metrics") => ("200 OK", CONTENT_TYPE, encode_metrics()),
        (b"GET", _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed\n".to_owned(),
        ),
    };
    let mut response = String::with_capacity(body.len() + 128);
    let _ = write!(
        response,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    response.push_str(&body);
    if let Err(error) = stream.write_all(response.as_bytes()).await {
        tracing::debug!(%error, "cannot answer a metrics scrape");
    }
    let _ = stream.shutdown().await;
}

/// Encodes [`Metrics::global`] at each scrape.
#[derive(Debug)]
struct AegisCollector;

impl Collector for AegisCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let (ops, gauges) = all_series(Metrics::global());

        for kind in OpKind::ALL {
            let series: Vec<_> = ops.iter().filter(|op| op.kind() == kind).collect();
            if series.is_empty() {
                continue;
            }
            let names = kind.label_names();
            let labels = |values: &[String]| -> Vec<(&'static str, String)> {
                names.iter().copied().zip(values.iter().cloned()).collect()
            };

            let mut counter = encoder.encode_descriptor(
                kind.counter_name(),
                kind.help(),
                None,
                MetricType::Counter,
            )?;
            for op in &series {
                for (outcome, count) in op.outcome_counts().filter(|(_, n)| *n > 0) {
                    let mut set = labels(op.labels());
                    set.push(("outcome", outcome.as_str().to_owned()));
                    let mut family = counter.encode_family(&set)?;
                    family.encode_counter::<NoLabelSet, u64, u64>(&count, None)?;
                }
            }

            let help = format!("Duration of: {}", kind.help());
            let mut histogram = encoder.encode_descriptor(
                kind.duration_name(),
                &help,
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for op in &series {
                let view = op.timing();
                // Per bucket, not cumulative: the encoder adds them up.
                let buckets: Vec<(f64, u64)> = PROMETHEUS_BOUNDS
                    .iter()
                    .copied()
                    .chain([f64::INFINITY])
                    .zip(view.prometheus.iter().copied())
                    .collect();
                let count = buckets.iter().map(|(_, n)| n).sum();
                let set = labels(op.labels());
                let mut family = histogram.encode_family(&set)?;
                family.encode_histogram::<NoLabelSet>(
                    view.sum_nanos as f64 / 1e9,
                    count,
                    &buckets,
                    None,
                )?;
            }

            if let Some(name) = kind.in_flight_name() {
                let help = format!("In flight: {}", kind.help());
                let mut gauge = encoder.encode_descriptor(name, &help, None, MetricType::Gauge)?;
                for op in &series {
                    let set = labels(op.labels());
                    gauge.encode_family(&set)?.encode_gauge(&op.in_flight())?;
                }
            }
        }

        let mut kinds: Vec<_> = gauges.iter().map(|g| g.kind()).collect();
        kinds.dedup();
        for kind in kinds {
            let mut gauge =
                encoder.encode_descriptor(kind.name(), kind.help(), None, MetricType::Gauge)?;
            for series in gauges.iter().filter(|g| g.kind() == kind) {
                let set: Vec<(&'static str, String)> = kind
                    .label_names()
                    .iter()
                    .copied()
                    .zip(series.labels().iter().cloned())
                    .collect();
                gauge.encode_family(&set)?.encode_gauge(&series.value())?;
            }
        }
        Ok(())
    }
}
