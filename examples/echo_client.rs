//! Calls `echo-service.echo` once and prints the reply; exits non-zero if the call
//! fails.
//!
//! ```text
//! NATS_URL=nats://127.0.0.1:4222 cargo run -p aegis-examples --example echo_client -- "hello"
//! ```

use std::time::Duration;

use aegis_sdk::{Client, ConnectOptions};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    aegis_examples::finish(run().await)
}

async fn run() -> aegis_examples::Result {
    aegis_examples::init_tracing();
    let message = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "hello".to_owned());
    let client = Client::connect(&ConnectOptions::new(aegis_examples::nats_url())).await?;

    let reply: Value = client
        .call("echo-service", "echo", json!({ "message": message }))
        .timeout(Duration::from_secs(2))
        .await?;
    tracing::info!(%reply, "echo-service answered");
    let text = serde_json::to_string_pretty(&reply)?;
    std::io::Write::write_all(&mut std::io::stdout(), format!("{text}\n").as_bytes())?;
    Ok(())
}
