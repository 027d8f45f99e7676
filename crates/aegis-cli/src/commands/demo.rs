//! `aegis demo`: the SDK end to end on a real server, with a short report.

use std::time::{Duration, Instant};

use aegis_sdk::{HandlerError, RpcContext, Service};
use serde_json::{json, Value};

use crate::local_server::{free_port, LocalServer};
use crate::output::CliResult;
use crate::Global;

/// Arguments of `aegis demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// RPC calls to make.
    #[arg(long, default_value_t = 300)]
    calls: usize,
}

fn step(json: bool, text: &str) {
    if !json {
        println!("==> {text}");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub(crate) async fn run(global: &Global, args: Args) -> CliResult {
    let started = Instant::now();
    let json = global.json;

    // With --server (or NATS_URL) the demo uses that server; otherwise it runs its own.
    let (_server, url) = match &global.server {
        Some(url) => (None, url.clone()),
        None => {
            step(json, "starting a local nats-server with JetStream");
            let server = LocalServer::start(free_port()?, None)?;
            let url = server.url();
            (Some(server), url)
        }
    };
    let global = Global {
        server: Some(url.clone()),
        ..global.clone()
    };
    let client = global.connect().await?;

    step(json, "starting 3 instances of echo-service");
    let mut services = Vec::new();
    for _ in 0..3 {
        let service = Service::builder("echo-service")
            .rpc("echo", |ctx: RpcContext, params: Value| async move {
                Ok::<_, HandlerError>(json!({
                    "echo": params.get("message").cloned().unwrap_or(Value::Null),
                    "instance": ctx.instance_id().as_str(),
                    "timestamp": aegis_sdk::domain::envelope::now_timestamp(),
                }))
            })
            .build()?;
        service.start(&global.connect().await?).await?;
        services.push(service);
    }

    step(
        json,
        &format!("making {} RPC calls across the instances", args.calls),
    );
    let mut latencies = Vec::with_capacity(args.calls);
    let mut per_instance = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..args.calls {
        let sent = Instant::now();
        let reply: Value = client
            .call(
                "echo-service",
                "echo",
                json!({"message": format!("hello {i}")}),
            )
            .timeout(Duration::from_secs(2))
            .await?;
        latencies.push(sent.elapsed());
        let instance = reply["instance"].as_str().unwrap_or("?").to_owned();
        *per_instance.entry(instance).or_default() += 1;
    }
    latencies.sort_unstable();

    let error = client
        .call::<_, Value>("no-such-service", "ping", json!({}))
        .timeout(Duration::from_secs(2))
        .await
        .err()
        .map(|e| e.kind().as_str().to_owned())
        .unwrap_or_default();

    for service in &services {
        service.stop().await?;
    }

    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    if json {
        println!(
            "{}",
            json!({
                "server": url,
                "rpc": {
                    "calls": args.calls,
                    "per_instance": per_instance,
                    "p50_us": p50.as_micros() as u64,
                    "p99_us": p99.as_micros() as u64,
                },
                "unknown_service_error": error,
                "elapsed_ms": started.elapsed().as_millis() as u64,
            })
        );
    } else {
        println!();
        println!("Report");
        println!("  server                {url}");
        println!("  rpc calls             {}", args.calls);
        for (instance, count) in &per_instance {
            println!("    served by {instance:<24} {count}");
        }
        println!("  rpc latency           p50 {p50:?}, p99 {p99:?}");
        println!("  call to unknown svc   {error}");
        println!("  total time            {:?}", started.elapsed());
        println!("all components stopped; bye");
    }
    Ok(())
}
