//! `aegis call SERVICE METHOD [JSON]`: one RPC call.

use std::time::Duration;

use serde_json::Value;

use crate::output::{CliError, CliResult};
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
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Call this instance only.
    #[arg(long)]
    instance: Option<String>,
}

pub(crate) async fn run(global: &Global, args: Args) -> CliResult {
    let params: Value = match &args.params {
        None => Value::Object(Default::default()),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| CliError(format!("params are not valid JSON: {e}")))?,
    };
    if !params.is_object() {
        return Err(CliError("params must be a JSON object".into()));
    }
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return Err(CliError(
            "--timeout must be a positive number of seconds".into(),
        ));
    }
    let client = global.connect().await?;
    let mut call = client
        .call::<_, Value>(&args.service, &args.method, params)
        .timeout(Duration::from_secs_f64(args.timeout));
    if let Some(instance) = args.instance {
        call = call.instance(instance);
    }
    let result = call.await.map_err(|error| {
        if global.json {
            CliError(
                serde_json::json!({"error": error.kind().as_str(), "message": error.message()})
                    .to_string(),
            )
        } else {
            CliError(format!("{}: {}", error.kind(), error.message()))
        }
    })?;
    let text = if global.json {
        result.to_string()
    } else {
        serde_json::to_string_pretty(&result).unwrap_or_else(|_| result.to_string())
    };
    println!("{text}");
    Ok(())
}
