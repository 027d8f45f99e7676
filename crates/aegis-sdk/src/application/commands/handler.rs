//! Type erasure for command handlers: typed payload in, typed result out.

use std::future::Future;
use std::marker::PhantomData;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::context::CommandContext;
use crate::application::context::HandlerError;

/// Why a run did not produce a result.
pub(crate) enum RunFailure {
    /// The payload is not what the handler takes: retrying cannot help.
    Invalid(String),
    /// The handler failed; a retry may help.
    Failed(HandlerError),
}

pub(crate) trait CommandHandler: Send + Sync + 'static {
    fn call(
        &self,
        ctx: CommandContext,
        payload: Value,
    ) -> BoxFuture<'static, Result<Value, RunFailure>>;
}

pub(crate) struct TypedCommandHandler<F, P, R> {
    handler: F,
    _types: PhantomData<fn(P) -> R>,
}

impl<F, P, R> TypedCommandHandler<F, P, R> {
    pub(crate) fn new(handler: F) -> Self {
        TypedCommandHandler {
            handler,
            _types: PhantomData,
        }
    }
}

impl<F, Fut, P, R> CommandHandler for TypedCommandHandler<F, P, R>
where
    F: Fn(CommandContext, P) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    P: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
{
    fn call(
        &self,
        ctx: CommandContext,
        payload: Value,
    ) -> BoxFuture<'static, Result<Value, RunFailure>> {
        let payload: P = match serde_json::from_value(payload) {
            Ok(p) => p,
            Err(e) => {
                let reason = format!("INVALID_REQUEST: payload does not fit the handler: {e}");
                return futures::future::ready(Err(RunFailure::Invalid(reason))).boxed();
            }
        };
        let future = (self.handler)(ctx, payload);
        async move {
            let result = future.await.map_err(RunFailure::Failed)?;
            serde_json::to_value(result).map_err(|e| {
                RunFailure::Failed(HandlerError::with_code(
                    crate::domain::error_code::INTERNAL_ERROR,
                    format!("cannot encode the result: {e}"),
                ))
            })
        }
        .boxed()
    }
}
