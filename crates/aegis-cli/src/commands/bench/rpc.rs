//! RPC: `client.call` to a service against a core request to a raw queue subscriber
//! that echoes the payload.

use std::time::Duration;

use aegis_sdk::{HandlerError, RpcContext, Service};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};

use super::{compare, failed, raw_connect, Figures, Sizes};
use crate::output::CliResult;
use crate::Global;

const TIMEOUT: Duration = Duration::from_secs(10);
const RAW_SUBJECT: &str = "aegis-bench.raw.echo";

pub(super) async fn run(global: &Global, sizes: Sizes) -> CliResult<(Figures, Figures)> {
    // Raw: a queue subscriber that answers with the request's payload.
    let responder = raw_connect(global).await?;
    let mut requests = responder
        .queue_subscribe(RAW_SUBJECT, "aegis-bench".to_owned())
        .await
        .map_err(|e| failed("raw", e))?;
    let echo = tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            if let Some(reply) = message.reply {
                let _ = responder.publish(reply, message.payload).await;
            }
        }
    });
    let raw_client = raw_connect(global).await?;
    raw_client.flush().await.map_err(|e| failed("raw", e))?;
    let payload = Bytes::from(json!({"message": "hello"}).to_string());

    // SDK: a service with the same echo, on a connection of its own.
    let service = Service::builder("aegis-bench")
        .rpc("echo", |_: RpcContext, params: Value| async move {
            Ok::<_, HandlerError>(params)
        })
        .build()?;
    service.start(&global.connect().await?).await?;
    let client = global.connect().await?;

    let raw = move || {
        let (client, payload) = (raw_client.clone(), payload.clone());
        async move {
            client
                .request(RAW_SUBJECT, payload)
                .await
                .map(|_| ())
                .map_err(|e| failed("raw", e))
        }
    };
    let sdk = move || {
        let client = client.clone();
        async move {
            client
                .call::<_, Value>("aegis-bench", "echo", json!({"message": "hello"}))
                .timeout(TIMEOUT)
                .await
                .map(|_| ())
                .map_err(|e| failed("sdk", e))
        }
    };
    let figures = compare(sizes, raw, sdk).await;
    echo.abort();
    service.stop().await?;
    figures
}
