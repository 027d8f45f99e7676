//! JetStream streams: lookup and creation, and the mapping of JetStream errors.

use async_nats::jetstream::context::{
    CreateStreamErrorKind, GetStreamErrorKind, PublishError, PublishErrorKind,
};
use async_nats::jetstream::stream::{self, ConsumerErrorKind};
use async_nats::jetstream::Context;
use async_nats::jetstream::ErrorCode;

use crate::error::{Error, ErrorKind, Result};
use crate::ports::events::{Retention, Storage, StreamSpec, StreamState};

/// Looks up stream `name`.
pub(crate) async fn stream_state(context: &Context, name: &str) -> Result<StreamState> {
    let mut found = context.get_stream(name).await.map_err(|e| {
        let kind = match e.kind() {
            GetStreamErrorKind::JetStream(js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                ErrorKind::NotFound
            }
            GetStreamErrorKind::EmptyName | GetStreamErrorKind::InvalidStreamName => {
                ErrorKind::InvalidName
            }
            GetStreamErrorKind::Request => ErrorKind::Timeout,
            GetStreamErrorKind::JetStream(_) => ErrorKind::Storage,
        };
        Error::new(kind, format!("cannot look up stream {name}: {e}")).with_source(e)
    })?;
    let info = found.info().await.map_err(|e| {
        Error::new(
            ErrorKind::Storage,
            format!("cannot read stream {name}: {e}"),
        )
        .with_source(e)
    })?;
    Ok(to_state(info.clone()))
}

/// Creates a stream with limits retention and "discard old".
pub(crate) async fn create_stream(context: &Context, spec: &StreamSpec) -> Result<StreamState> {
    let config = stream::Config {
        name: spec.name.clone(),
        subjects: spec.subjects.clone(),
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        max_messages: spec.max_messages.map_or(-1, clamp_i64),
        max_bytes: spec.max_bytes.map_or(-1, clamp_i64),
        max_age: spec.max_age.unwrap_or_default(),
        num_replicas: spec.replicas.max(1),
        storage: match spec.storage {
            Storage::File => stream::StorageType::File,
            Storage::Memory => stream::StorageType::Memory,
        },
        duplicate_window: spec.duplicate_window,
        ..Default::default()
    };
    let created = context.create_stream(config).await.map_err(|e| {
        let kind = match e.kind() {
            CreateStreamErrorKind::JetStream(js)
                if js.error_code() == ErrorCode::STREAM_NAME_EXIST =>
            {
                ErrorKind::AlreadyExists
            }
            CreateStreamErrorKind::EmptyStreamName | CreateStreamErrorKind::InvalidStreamName => {
                ErrorKind::InvalidName
            }
            CreateStreamErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Storage,
        };
        Error::new(kind, format!("cannot create stream {}: {e}", spec.name)).with_source(e)
    })?;
    tracing::info!(stream = %spec.name, subjects = ?spec.subjects, "created stream");
    Ok(to_state(created.cached_info().clone()))
}

fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_state(info: stream::Info) -> StreamState {
    StreamState {
        name: info.config.name,
        subjects: info.config.subjects,
        retention: match info.config.retention {
            stream::RetentionPolicy::Limits => Retention::Limits,
            stream::RetentionPolicy::Interest => Retention::Interest,
            stream::RetentionPolicy::WorkQueue => Retention::WorkQueue,
        },
        messages: info.state.messages,
    }
}

/// Maps a JetStream publish failure.
pub(crate) fn publish_error(subject: &str, e: PublishError) -> Error {
    let kind = match e.kind() {
        PublishErrorKind::StreamNotFound => ErrorKind::NotFound,
        PublishErrorKind::TimedOut => ErrorKind::Timeout,
        PublishErrorKind::MaxPayloadExceeded => ErrorKind::PayloadTooLarge,
        PublishErrorKind::BrokenPipe => ErrorKind::Connection,
        PublishErrorKind::WrongLastMessageId
        | PublishErrorKind::WrongLastSequence
        | PublishErrorKind::MaxAckPending
        | PublishErrorKind::Other => ErrorKind::Storage,
    };
    let text = match kind {
        ErrorKind::NotFound => format!("no stream captures subject {subject}"),
        _ => format!("publish to {subject} failed: {e}"),
    };
    Error::new(kind, text).with_source(e)
}

/// Maps a consumer operation failure.
pub(crate) fn consumer_error(what: &str, e: stream::ConsumerError) -> Error {
    let kind = match e.kind() {
        ConsumerErrorKind::TimedOut | ConsumerErrorKind::Request => ErrorKind::Timeout,
        ConsumerErrorKind::InvalidName => ErrorKind::InvalidName,
        ConsumerErrorKind::JetStream(js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND => {
            ErrorKind::NotFound
        }
        ConsumerErrorKind::JetStream(js) if js.error_code() == ErrorCode::CONSUMER_NOT_FOUND => {
            ErrorKind::NotFound
        }
        _ => ErrorKind::Storage,
    };
    Error::new(kind, format!("{what}: {e}")).with_source(e)
}
