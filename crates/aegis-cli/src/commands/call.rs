//! `aegis call SERVICE METHOD [JSON]`: one RPC call.

use std::time::Duration;

use serde_json::Value;

use crate::output::{json_object, seconds, CliResult};
use crate::Global;

/// Arguments of `aegis call`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The service to call.
    service: String,
    /// The method to call.
    method: String,
    /// Parameters as a JSON object (default `{}`).
    params: Option<String>,
    /// Seconds to wait for the reply.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = seconds)]
    timeout: Duration,
    /// Call this instance only.
    #[arg(long)]
    instance: Option<String>,
}

pub(crate) async fn run(global: &Global, args: Args) -> CliResult {
    let params = json_object(args.params.as_deref(), "params")?;
    // Sent as the JSON it was given, so that a handler refusing it names JSON, not the
    // MessagePack the SDK sends by default.
    let client = global
        .connect()
        .await?
        .with_encoding(aegis_sdk::domain::Encoding::Json);
    let mut call = client
        .call::<_, Value>(&args.service, &args.method, params)
        .timeout(args.timeout);
    if let Some(instance) = args.instance {
        call = call.instance(instance);
    }
    let result = call.await?;
    let text = if global.json {
        result.to_string()
    } else {
        serde_json::to_string_pretty(&result).unwrap_or_else(|_| result.to_string())
    };
    println!("{text}");
    Ok(())
}
