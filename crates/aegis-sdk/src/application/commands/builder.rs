//! `ServiceBuilder::on_command`: register a command handler on a service.

use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::context::CommandContext;
use super::handler::TypedCommandHandler;
use super::options::WorkerOptions;
use super::worker::CommandWorker;
use crate::application::context::HandlerError;
use crate::application::service::ServiceBuilder;
use crate::domain::MethodName;

impl ServiceBuilder {
    /// Runs `handler` for every `command` sent to this service (on
    /// `commands.{service}.{command}`), with the default [`WorkerOptions`]. All
    /// instances of the service share the commands: each runs on one of them.
    ///
    /// # Examples
    /// ```
    /// use aegis_sdk::{CommandContext, HandlerError, Service};
    /// use serde_json::{json, Value};
    ///
    /// let service = Service::builder("batch-service")
    ///     .on_command("process_batch", |ctx: CommandContext, batch: Value| async move {
    ///         ctx.progress(0.0, "starting").await?;
    ///         // ... work ...
    ///         ctx.progress(100.0, "done").await?;
    ///         Ok::<_, HandlerError>(json!({"processed": batch["items"]}))
    ///     })
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn on_command<F, Fut, P, R>(self, command: impl Into<String>, handler: F) -> Self
    where
        F: Fn(CommandContext, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
        P: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        self.on_command_with(command, WorkerOptions::default(), handler)
    }

    /// Like [`ServiceBuilder::on_command`], with explicit [`WorkerOptions`] (concurrency,
    /// look-ahead, ack wait, aging, backoff).
    pub fn on_command_with<F, Fut, P, R>(
        self,
        command: impl Into<String>,
        options: WorkerOptions,
        handler: F,
    ) -> Self
    where
        F: Fn(CommandContext, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
        P: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        match MethodName::new(command) {
            Ok(command) => self.component(CommandWorker::new(
                command,
                options,
                Arc::new(TypedCommandHandler::new(handler)),
            )),
            Err(error) => self.invalid(error),
        }
    }
}
