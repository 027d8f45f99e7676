//! The NATS service API of a running instance: per-endpoint statistics kept by the RPC
//! dispatcher, and the responder of `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS`.
//!
//! The instance keeps its own RPC subscriptions (queue group `rpc.{service}`, as the
//! wire contract says); this module only describes them to NATS tooling, with each RPC
//! method as an endpoint. Statistics are kept per instance, always (they cost a few
//! atomic additions per request), and are independent of the process-wide
//! [`Metrics`](super::metrics::Metrics), which also get each request when enabled.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::watch;

use super::context::InstanceInfo;
use super::handler::Outgoing;
use super::metrics::{Metrics, Op, OpKind, Outcome};
use crate::domain::micro::{
    EndpointInfo, EndpointStats, InfoResponse, PingResponse, StatsResponse, Verb,
    INFO_RESPONSE_TYPE, PING_RESPONSE_TYPE, STATS_RESPONSE_TYPE,
};
use crate::domain::{error_code, subjects};
use crate::error::Result;
use crate::ports::{Headers, Subscription, Transport};

/// The statistics of every endpoint of one running instance.
pub(crate) struct Endpoints {
    instance: Arc<InstanceInfo>,
    started: String,
    by_method: HashMap<Arc<str>, Endpoint>,
}

/// One endpoint's statistics.
struct Endpoint {
    requests: AtomicU64,
    errors: AtomicU64,
    processing_nanos: AtomicU64,
    last_error: Mutex<String>,
    /// The process-wide series, made the first time a request finds metrics on.
    metrics: OnceLock<Arc<Op>>,
}

impl Endpoints {
    pub(crate) fn new<'a>(
        instance: Arc<InstanceInfo>,
        methods: impl IntoIterator<Item = &'a Arc<str>>,
    ) -> Self {
        let by_method = methods
            .into_iter()
            .map(|method| {
                let endpoint = Endpoint {
                    requests: AtomicU64::new(0),
                    errors: AtomicU64::new(0),
                    processing_nanos: AtomicU64::new(0),
                    last_error: Mutex::new(String::new()),
                    metrics: OnceLock::new(),
                };
                (method.clone(), endpoint)
            })
            .collect();
        Endpoints {
            instance,
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            by_method,
        }
    }

    /// Starts timing one request to `method`; `None` for a method the service lacks.
    pub(crate) fn begin(&self, method: &str) -> Option<Probe<'_>> {
        let endpoint = self.by_method.get(method)?;
        let op = Metrics::global().is_enabled().then(|| {
            &**endpoint.metrics.get_or_init(|| {
                Metrics::global().op(OpKind::RpcServer, &[self.instance.service.as_str(), method])
            })
        });
        let started = match op {
            Some(op) => op.start(),
            None => Instant::now(),
        };
        Some(Probe {
            endpoint,
            op,
            started,
            finished: false,
        })
    }

    fn info(&self) -> InfoResponse {
        InfoResponse {
            kind: INFO_RESPONSE_TYPE.to_owned(),
            name: self.instance.service.to_string(),
            id: self.instance.instance_id.to_string(),
            version: self.instance.version.clone(),
            metadata: metadata(),
            description: String::new(),
            endpoints: self
                .sorted()
                .map(|(method, _)| EndpointInfo {
                    name: method.to_string(),
                    subject: self.subject(method),
                    queue_group: subjects::rpc_queue_group(&self.instance.service),
                    metadata: BTreeMap::new(),
                })
                .collect(),
        }
    }

    fn stats(&self) -> StatsResponse {
        StatsResponse {
            kind: STATS_RESPONSE_TYPE.to_owned(),
            name: self.instance.service.to_string(),
            id: self.instance.instance_id.to_string(),
            version: self.instance.version.clone(),
            metadata: metadata(),
            started: self.started.clone(),
            endpoints: self
                .sorted()
                .map(|(method, endpoint)| {
                    let requests = endpoint.requests.load(Ordering::Relaxed);
                    let processing = endpoint.processing_nanos.load(Ordering::Relaxed);
                    EndpointStats {
                        name: method.to_string(),
                        subject: self.subject(method),
                        queue_group: subjects::rpc_queue_group(&self.instance.service),
                        num_requests: requests,
                        num_errors: endpoint.errors.load(Ordering::Relaxed),
                        last_error: endpoint
                            .last_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .clone(),
                        processing_time: processing,
                        average_processing_time: processing.checked_div(requests).unwrap_or(0),
                        data: serde_json::Map::new(),
                    }
                })
                .collect(),
        }
    }

    fn ping(&self) -> PingResponse {
        PingResponse {
            kind: PING_RESPONSE_TYPE.to_owned(),
            name: self.instance.service.to_string(),
            id: self.instance.instance_id.to_string(),
            version: self.instance.version.clone(),
            metadata: metadata(),
        }
    }

    fn sorted(&self) -> impl Iterator<Item = (&Arc<str>, &Endpoint)> {
        let mut endpoints: Vec<_> = self.by_method.iter().collect();
        endpoints.sort_by(|a, b| a.0.cmp(b.0));
        endpoints.into_iter()
    }

    fn subject(&self, method: &str) -> String {
        format!("rpc.{}.{}", self.instance.service, method)
    }
}

/// What every reply says about the SDK.
fn metadata() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("sdk".to_owned(), "aegis-sdk-rust".to_owned()),
        (
            "sdk_version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ])
}

/// One request being timed. Finish it with the reply; one dropped unfinished (its
/// handler was aborted) counts as an error.
pub(crate) struct Probe<'a> {
    endpoint: &'a Endpoint,
    op: Option<&'a Op>,
    started: Instant,
    finished: bool,
}

impl Probe<'_> {
    /// When the request began.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Counts the request, as failed if `reply` reports a failure.
    pub(crate) fn finish(mut self, reply: &Outgoing) {
        self.finished = true;
        self.count(
            reply.error.as_deref().filter(|_| reply.failed),
            reply.failed,
        );
    }

    fn count(&self, error: Option<&str>, failed: bool) {
        let elapsed = self.started.elapsed();
        let endpoint = self.endpoint;
        endpoint.requests.fetch_add(1, Ordering::Relaxed);
        endpoint.processing_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if failed {
            endpoint.errors.fetch_add(1, Ordering::Relaxed);
            if let Some(error) = error {
                let mut last = endpoint
                    .last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                last.clear();
                last.push_str(error);
            }
        }
        if let Some(op) = self.op {
            let outcome = match (failed, error) {
                (false, _) => Outcome::Ok,
                (true, Some(text)) if text.starts_with(crate::domain::error_code::NOT_ACTIVE) => {
                    Outcome::NotActive
                }
                (true, Some(text)) if text.starts_with(crate::domain::error_code::TIMEOUT) => {
                    Outcome::Timeout
                }
                (true, _) => Outcome::Error,
            };
            op.finish_after(elapsed, outcome);
        }
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.count(Some("INTERNAL_ERROR: handler aborted"), true);
        }
    }
}

/// The header with the error text of a failure reply, as NATS service clients read it.
pub(crate) const ERROR_HEADER: &str = "Nats-Service-Error";
/// The header with the numeric error code of a failure reply.
pub(crate) const ERROR_CODE_HEADER: &str = "Nats-Service-Error-Code";

/// Marks a failure reply for NATS service clients, which look for the error in headers
/// (the envelope still carries it for Aegis and Python peers). The code follows the
/// error's well-known code: 400 for `INVALID_REQUEST`, 503 for `NOT_ACTIVE`,
/// `SERVICE_UNAVAILABLE` and `ELECTING`, 504 for `TIMEOUT`, else 500.
pub(crate) fn error_headers(headers: &mut Headers, error: Option<&str>) {
    let error = error.unwrap_or("handler failed");
    let code = match error.split(':').next().unwrap_or_default() {
        error_code::INVALID_REQUEST => "400",
        error_code::NOT_ACTIVE | error_code::SERVICE_UNAVAILABLE | error_code::ELECTING => "503",
        error_code::TIMEOUT => "504",
        _ => "500",
    };
    // A header value is one line: control characters would break the message framing.
    let mut text: String = error
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.len() > MAX_ERROR_HEADER {
        let mut end = MAX_ERROR_HEADER;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    headers.insert(ERROR_CODE_HEADER, code);
    headers.insert(ERROR_HEADER, text);
}

/// The longest error text put in a header; the envelope has it whole.
const MAX_ERROR_HEADER: usize = 1024;

/// Subscribes the service API subjects of `endpoints`' instance.
///
/// # Errors
/// [`ErrorKind::Connection`](crate::ErrorKind::Connection) when a subscription fails.
pub(crate) async fn subscribe(
    transport: &dyn Transport,
    instance: &InstanceInfo,
) -> Result<Vec<(Verb, Subscription)>> {
    let mut subscriptions = Vec::new();
    for verb in Verb::ALL {
        for subject in verb.subjects(instance.service.as_str(), instance.instance_id.as_str()) {
            subscriptions.push((verb, transport.subscribe(subject, None).await?));
        }
    }
    Ok(subscriptions)
}

/// Answers the service API requests until `stop` turns true.
pub(crate) async fn serve(
    endpoints: Arc<Endpoints>,
    transport: Arc<dyn Transport>,
    subscriptions: Vec<(Verb, Subscription)>,
    mut stop: watch::Receiver<bool>,
) {
    let mut requests = futures::stream::select_all(
        subscriptions
            .into_iter()
            .map(|(verb, subscription)| subscription.map(move |message| (verb, message))),
    );
    loop {
        let (verb, message) = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            next = requests.next() => match next {
                Some(next) => next,
                None => break,
            },
        };
        let Some(reply) = message.reply else { continue };
        let body = match verb {
            Verb::Ping => serde_json::to_vec(&endpoints.ping()),
            Verb::Info => serde_json::to_vec(&endpoints.info()),
            Verb::Stats => serde_json::to_vec(&endpoints.stats()),
        };
        let body = match body {
            Ok(body) => body,
            Err(error) => {
                tracing::debug!(%error, "cannot encode a service API reply");
                continue;
            }
        };
        tracing::trace!(verb = verb.as_str(), "service API request");
        if let Err(error) = transport
            .publish(reply, Headers::new(), Bytes::from(body))
            .await
        {
            tracing::debug!(%error, "cannot answer a service API request");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_headers_carry_a_code_and_one_line_of_text() {
        let mut headers = Headers::new();
        error_headers(&mut headers, Some("INVALID_REQUEST: bad\r\ninput"));
        assert_eq!(headers.get(ERROR_CODE_HEADER), Some("400"));
        assert_eq!(
            headers.get(ERROR_HEADER),
            Some("INVALID_REQUEST: bad  input")
        );

        for (error, code) in [
            ("NOT_ACTIVE: standby", "503"),
            ("TIMEOUT: slow", "504"),
            ("out of stock", "500"),
        ] {
            let mut headers = Headers::new();
            error_headers(&mut headers, Some(error));
            assert_eq!(headers.get(ERROR_CODE_HEADER), Some(code), "{error}");
        }
        let mut headers = Headers::new();
        error_headers(&mut headers, Some(&"é".repeat(1000)));
        assert!(headers.get(ERROR_HEADER).unwrap().len() <= MAX_ERROR_HEADER);
    }
}
