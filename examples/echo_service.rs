//! An echo service: `echo-service` with one method, `echo`.
//!
//! Run it against a local server (start one with `cargo run -p aegis-cli -- server`):
//!
//! ```text
//! NATS_URL=nats://127.0.0.1:4222 cargo run -p aegis-examples --example echo_service
//! ```
//!
//! then call it with `cargo run -p aegis-examples --example echo_client`. It registers
//! in the service registry: `cargo run -p aegis-cli -- services` lists it (instance,
//! version, heartbeat). Stop with Ctrl-C: the service drains in-flight calls and
//! deregisters before it exits.
//!
//! With `METRICS_ADDR=127.0.0.1:9464`, it also serves Prometheus metrics at
//! `http://127.0.0.1:9464/metrics`; `nats micro ls` and `nats micro stats echo-service`
//! list and inspect it either way.

use aegis_sdk::application::registration::RegistryOptions;
use aegis_sdk::{Client, ConnectOptions, HandlerError, RpcContext, Service};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct EchoRequest {
    message: serde_json::Value,
}

#[derive(Serialize)]
struct EchoReply {
    echo: serde_json::Value,
    instance: String,
    timestamp: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    aegis_examples::finish(run().await)
}

async fn run() -> aegis_examples::Result {
    aegis_examples::init_tracing();
    let client = Client::connect(&ConnectOptions::new(aegis_examples::nats_url())).await?;
    let _metrics = match std::env::var("METRICS_ADDR") {
        Ok(address) => Some(aegis_sdk::adapters::prometheus::serve_prometheus(&address).await?),
        Err(_) => None,
    };

    let service = Service::builder("echo-service")
        .version("1.0.0")
        .rpc("echo", |ctx: RpcContext, request: EchoRequest| async move {
            Ok::<_, HandlerError>(EchoReply {
                echo: request.message,
                instance: ctx.instance_id().to_string(),
                timestamp: aegis_sdk::domain::envelope::now_timestamp(),
            })
        })
        // Heartbeats every 5 s; the entry expires 15 s after the last one.
        .with_registry(RegistryOptions::default())
        .build()?;
    service.start(&client).await?;
    tracing::info!(instance = %service.instance_id(), "echo-service ready; Ctrl-C to stop");

    tokio::signal::ctrl_c().await?;
    service.stop().await?;
    Ok(())
}
