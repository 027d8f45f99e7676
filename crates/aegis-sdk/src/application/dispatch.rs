//! The loop that takes requests off a subscription and runs their handlers.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use tokio::runtime::RuntimeFlavor;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Span;

use super::client::Client;
use super::context::{InstanceInfo, RpcContext};
use super::handler::{failure_reply, Incoming, Outgoing, RpcHandler};
use super::propagation;
use crate::domain::{error_code, subjects, Encoding};
use crate::ports::{Headers, InboundMessage, Subscription};

/// The most requests one dispatch loop takes in while at the concurrency limit.
const MAX_QUEUED: usize = 4096;

/// Everything the dispatch loops of one running service share.
pub(crate) struct Dispatcher {
    pub(crate) instance: Arc<InstanceInfo>,
    pub(crate) client: Client,
    pub(crate) handlers: HashMap<Arc<str>, Arc<dyn RpcHandler>>,
    pub(crate) encoding: Encoding,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) exclusive: Option<Arc<super::election::ExclusiveGate>>,
    pub(crate) endpoints: Arc<super::micro::Endpoints>,
    /// The reply subjects (and requests) of handlers aborted at the end of a drain.
    pub(crate) aborted: std::sync::Mutex<Vec<(String, bytes::Bytes)>>,
}

/// A request whose handler is running: dropped before [`answered`](Self::answered) (the
/// handler's task was aborted), it leaves its reply subject with the dispatcher, which
/// tells the caller.
struct Unanswered<'a> {
    dispatcher: &'a Dispatcher,
    reply: Option<(String, bytes::Bytes)>,
}

impl Unanswered<'_> {
    /// The handler finished: the reply subject, to answer on.
    fn answered(mut self) -> String {
        self.reply
            .take()
            .map(|(reply_to, _)| reply_to)
            .unwrap_or_default()
    }
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            let mut aborted = self
                .dispatcher
                .aborted
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            aborted.push(reply);
        }
    }
}

/// Where the method name is found in the subjects a loop listens on.
#[derive(Clone, Copy)]
pub(crate) enum MethodFrom {
    /// `rpc.{service}.{method}`: the loop serves one method, known in advance.
    Fixed,
    /// `rpc.{service}.{method}.{instance}`: the third token.
    ThirdToken,
}

impl Dispatcher {
    /// Serves `subscription` until `stop` turns true, then drains: stops taking new
    /// requests, answers those already received, and waits for running handlers until
    /// `drain_deadline` after the stop, aborting whatever still runs then.
    pub(crate) async fn serve(
        self: Arc<Self>,
        mut subscription: Subscription,
        fixed_method: Option<Arc<str>>,
        method_from: MethodFrom,
        mut stop: watch::Receiver<bool>,
        drain_timeout: Duration,
    ) {
        let mut running = JoinSet::new();
        // On a current-thread runtime every task runs on this thread anyway: a request
        // whose handler finishes without waiting (most do) is answered right here, and
        // only one that has to wait becomes a task of its own. That saves a task spawn
        // per call. On a multi-thread runtime each request is a task, so that
        // handlers run in parallel.
        let inline_first_poll =
            tokio::runtime::Handle::current().runtime_flavor() == RuntimeFlavor::CurrentThread;

        // One wait for the stop, made once: not a fresh registration per request.
        let stopped = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        tokio::pin!(stopped);
        // Requests taken in while the service is at its concurrency limit, with the time
        // each arrived: their callers' deadlines run from then, not from when a permit
        // frees up. Beyond `MAX_QUEUED`, requests wait in the subscription's buffer.
        let mut queue: VecDeque<(InboundMessage, Instant)> = VecDeque::new();
        // One request's work, holding its slot until done.
        let request = |message, arrived, permit: OwnedSemaphorePermit| {
            let (this, method) = (self.clone(), fixed_method.clone());
            async move {
                this.handle(message, method, method_from, arrived).await;
                drop(permit);
            }
        };

        'serve: loop {
            let (message, arrived, permit) = loop {
                tokio::select! {
                    biased;
                    () = &mut stopped => break 'serve,
                    // Reap finished handlers so the set stays as small as the work.
                    Some(_) = running.join_next(), if !running.is_empty() => continue,
                    permit = self.permits.clone().acquire_owned(), if !queue.is_empty() => {
                        let (Ok(permit), Some((message, arrived))) = (permit, queue.pop_front())
                        else {
                            break 'serve;
                        };
                        break (message, Some(arrived), permit);
                    }
                    message = subscription.next(), if queue.len() < MAX_QUEUED => {
                        let Some(message) = message else { break 'serve };
                        match self.permits.clone().try_acquire_owned() {
                            Ok(permit) if queue.is_empty() => break (message, None, permit),
                            _ => queue.push_back((message, Instant::now())),
                        }
                    }
                }
            };
            let mut request = Box::pin(request(message, arrived, permit));
            // Polled once here with a no-op waker; a request still pending is polled
            // again (and registers its real waker) as soon as its task starts.
            if inline_first_poll && request.as_mut().now_or_never().is_some() {
                continue;
            }
            running.spawn(request);
        }

        // Draining: no new requests reach us; those already delivered still get answers,
        // within the concurrency limit and the drain deadline.
        let deadline = super::clock::after(drain_timeout);
        if let Err(error) = subscription.drain().await {
            tracing::debug!(%error, "drain of rpc subscription failed");
        }
        loop {
            let next = tokio::time::timeout_at(deadline, subscription.next()).await;
            let Ok(Some(message)) = next else { break };
            queue.push_back((message, Instant::now()));
        }
        let finished = tokio::time::timeout_at(deadline, async {
            while !queue.is_empty() {
                let Ok(permit) = self.permits.clone().acquire_owned().await else {
                    break;
                };
                let Some((message, arrived)) = queue.pop_front() else {
                    break;
                };
                running.spawn(request(message, Some(arrived), permit));
            }
            while running.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                service = %self.instance.service,
                still_running = running.len(),
                never_started = queue.len(),
                "handlers did not finish within the drain timeout; aborting them"
            );
            running.shutdown().await;
            // Handlers cut short: their callers hear so now, not at their timeouts.
            let aborted =
                std::mem::take(&mut *self.aborted.lock().unwrap_or_else(|e| e.into_inner()));
            for (reply_to, payload) in aborted {
                let why = format!(
                    "{} stopped while the call ran (its drain timeout passed); it may have \
                     run in part",
                    self.instance.service
                );
                self.unavailable(&payload, reply_to, why).await;
            }
        }
        // Requests that never started: their callers hear so at once, and may call again.
        for (mut message, _) in queue {
            if let Some(reply_to) = message.reply.take() {
                let why = format!(
                    "{} stopped before the call could start",
                    self.instance.service
                );
                self.unavailable(&message.payload, reply_to, why).await;
            }
        }
    }

    /// Answers the request in `payload` with a `SERVICE_UNAVAILABLE` failure saying `why`.
    async fn unavailable(&self, payload: &[u8], reply_to: String, why: String) {
        let error = error_code::with_code(error_code::SERVICE_UNAVAILABLE, why);
        self.refuse(payload, None, reply_to, Headers::new(), error)
            .await;
    }

    async fn handle(
        &self,
        mut message: InboundMessage,
        method: Option<Arc<str>>,
        from: MethodFrom,
        arrived: Option<Instant>,
    ) {
        let Some(mut reply_to) = message.reply.take() else {
            tracing::debug!(subject = %message.subject, "request without reply subject ignored");
            return;
        };
        let method: Option<Arc<str>> = match from {
            MethodFrom::Fixed => method,
            MethodFrom::ThirdToken => message.subject.split('.').nth(2).map(Arc::from),
        };
        if method.as_deref() == Some(subjects::LIVENESS_METHOD) {
            // "Are you there?" from a caller waiting on this instance: any reply will do.
            let alive = Outgoing {
                payload: Vec::new(),
                failed: false,
                error: None,
            };
            self.send_reply(reply_to, Headers::new(), alive).await;
            return;
        }
        let handler = method
            .as_ref()
            .and_then(|name| self.handlers.get(name).map(|h| (name.clone(), h.clone())));
        let probe = handler
            .as_ref()
            .and_then(|(name, _)| self.endpoints.begin(name));

        let mut reply_headers = Headers::new();
        let outgoing: Outgoing = match handler {
            None => failure_reply(
                self.encoding,
                crate::domain::envelope::peek_ids(&message.payload).and_then(|ids| ids.0),
                None,
                error_code::with_code(
                    error_code::INVALID_REQUEST,
                    format!("unknown method {:?}", method.as_deref().unwrap_or("")),
                ),
            ),
            Some((name, handler)) => {
                // Exclusive methods run on the leader only; the check is made against
                // the clock right before the handler starts. The admission is held until
                // the handler is done: a stopping leader hands over only after that.
                let (fencing_token, _admission) = match self
                    .exclusive
                    .as_ref()
                    .map(|gate| gate.admit(&name, &self.instance))
                {
                    None | Some(Ok(None)) => (None, None),
                    Some(Ok(Some((token, admission)))) => (Some(token), Some(admission)),
                    Some(Err(refusal)) => {
                        if let Some(leader) = refusal.leader {
                            reply_headers.insert(crate::domain::election::LEADER_HEADER, leader);
                        }
                        let payload = &message.payload;
                        self.refuse(payload, probe, reply_to, reply_headers, refusal.error)
                            .await;
                        return;
                    }
                };
                // The leader names itself on its replies, so that callers know the
                // method is exclusive and whom to ask whether it is still alive.
                if fencing_token.is_some() {
                    reply_headers.insert(
                        crate::domain::election::LEADER_HEADER,
                        self.instance.instance_id.as_str(),
                    );
                    // "I have it": the caller will not send it again, whatever happens.
                    // The handler starts only once the server has the confirmation (a
                    // round trip): a leader dying as the handler starts must not leave
                    // the confirmation unsent in its buffer, or the caller would send
                    // the call again to the next leader, and it would run twice.
                    if let Some(receipt) = message
                        .headers
                        .get(crate::domain::election::RECEIPT_HEADER)
                        .filter(|s| s.starts_with("_INBOX.") && !s.contains([' ', '*', '>']))
                    {
                        if let Err(error) = self.confirm(receipt).await {
                            // Unconfirmed, the call must not run: the caller may send it
                            // again elsewhere.
                            tracing::debug!(%error, "cannot confirm an exclusive call");
                            let error = error_code::with_code(
                                error_code::INTERNAL_ERROR,
                                format!("cannot confirm the call to its caller: {error}"),
                            );
                            let payload = &message.payload;
                            self.refuse(payload, probe, reply_to, reply_headers, error)
                                .await;
                            return;
                        }
                    }
                }
                let context = RpcContext {
                    instance: self.instance.clone(),
                    client: self.client.clone(),
                    method: name,
                    message_id: String::new(),
                    trace_id: String::new(),
                    source: None,
                    // When the request arrived, until the handler adds the caller's
                    // budget to it; a request that did not wait arrived just now.
                    deadline: match (arrived, &probe) {
                        (Some(arrived), _) => arrived,
                        (None, Some(probe)) => probe.started(),
                        (None, None) => Instant::now(),
                    },
                    headers: message.headers,
                    fencing_token,
                    leadership: fencing_token
                        .and(self.exclusive.as_ref())
                        .map(|gate| gate.leadership.clone()),
                };
                let span = self.span(&context.method, &message.payload);
                let trace =
                    propagation::incoming_request(&context.headers, &message.payload, &span);
                // Should the stop's drain abort the handler, the caller hears so.
                let guard = Unanswered {
                    dispatcher: self,
                    reply: Some((reply_to, message.payload.clone())),
                };
                let incoming = Incoming {
                    payload: message.payload,
                    context,
                    waited: arrived.is_some(),
                };
                let encoding = self.encoding;
                let call = async move { handler.call(incoming, encoding).await };
                let outgoing = propagation::continue_trace(trace, span, call).await;
                reply_to = guard.answered();
                outgoing
            }
        };
        if outgoing.failed {
            tracing::debug!(service = %self.instance.service, method = ?method, "rpc failed");
        }
        if let Some(probe) = probe {
            probe.finish(&outgoing);
        }

        self.send_reply(reply_to, reply_headers, outgoing).await;
    }

    /// Tells the caller on its `receipt` subject that the call was admitted, and waits
    /// until the server has it.
    async fn confirm(&self, receipt: &str) -> crate::Result<()> {
        let transport = self.client.transport();
        transport
            .publish(receipt.to_owned(), Headers::new(), bytes::Bytes::new())
            .await?;
        transport.flush().await
    }

    /// Answers a request that will not run with a failure reply saying `error`.
    async fn refuse(
        &self,
        payload: &[u8],
        probe: Option<super::micro::Probe<'_>>,
        reply_to: String,
        headers: Headers,
        error: String,
    ) {
        let ids = crate::domain::envelope::peek_ids(payload).unwrap_or((None, None));
        let reply = failure_reply(self.encoding, ids.0, ids.1, error);
        if let Some(probe) = probe {
            probe.finish(&reply);
        }
        self.send_reply(reply_to, headers, reply).await;
    }

    /// The span of one handler run, with the request's message id when it is recorded.
    fn span(&self, method: &str, payload: &[u8]) -> Span {
        let span = tracing::info_span!(
            "aegis.rpc.handle",
            service = %self.instance.service,
            method,
            instance = %self.instance.instance_id,
            message_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        if !span.is_disabled() {
            if let Some((Some(message_id), _)) = crate::domain::envelope::peek_ids(payload) {
                span.record("message_id", message_id);
            }
        }
        span
    }

    async fn send_reply(&self, reply_to: String, mut headers: Headers, outgoing: Outgoing) {
        if outgoing.failed {
            super::micro::error_headers(&mut headers, outgoing.error.as_deref());
        }
        let transport = self.client.transport();
        let mut payload = outgoing.payload;
        let (size, max) = (headers.wire_len() + payload.len(), transport.max_payload());
        if size > max {
            // The caller would otherwise wait out its timeout for a reply that never comes.
            let error = format!(
                "the reply of {size} bytes exceeds the server's max_payload of {max} bytes"
            );
            tracing::debug!(service = %self.instance.service, "{error}");
            headers = Headers::new();
            payload = failure_reply(
                self.encoding,
                None,
                None,
                error_code::with_code(error_code::INTERNAL_ERROR, error),
            )
            .payload;
        }
        let sent = match self.client.nats() {
            // The same transport, called without boxing its future.
            Some(nats) => {
                nats.publish_message(reply_to, headers, payload.into())
                    .await
            }
            None => transport.publish(reply_to, headers, payload.into()).await,
        };
        if let Err(error) = sent {
            tracing::debug!(%error, "cannot send rpc reply");
        }
    }
}
