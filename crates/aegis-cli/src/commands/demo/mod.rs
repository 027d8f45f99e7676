//! `aegis demo`: the SDK end to end on a real server, with a short report.
//!
//! Each step is a module of its own: RPC over load-balanced instances, events in compete
//! and broadcast mode, a command with live progress, KV with a watch, discovery with a
//! sticky call, and a single-active service whose leader process is killed.

mod commands;
mod events;
mod failover;
mod kv;
mod rpc;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::local_server::LocalServer;
use crate::output::{interrupted, CliError, CliResult};
use crate::Global;

pub(crate) use failover::{node, NodeArgs};

/// Arguments of `aegis demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// RPC calls to make (at least 1).
    #[arg(long, default_value_t = 300, value_parser = crate::output::positive)]
    calls: u64,
}

/// What the steps print as they go, unless `--json` asked for one document at the end.
pub(crate) struct Narrator {
    pub(crate) json: bool,
}

impl Narrator {
    pub(crate) fn step(&self, text: &str) {
        if !self.json {
            println!("\n==> {text}");
        }
    }

    pub(crate) fn line(&self, text: &str) {
        if !self.json {
            println!("    {text}");
        }
    }
}

/// The `p`-quantile of sorted durations.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub(crate) fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

pub(crate) async fn run(global: &Global, args: Args) -> CliResult {
    // A signal (Ctrl-C, SIGTERM, SIGHUP) stops the demo where it is; dropping its steps
    // stops the services, the node processes and the server, and removes the server's
    // temporary folder.
    let stop = interrupted();
    tokio::select! {
        result = demo(global, args) => result,
        signal = stop => Err(CliError::stopped_by(signal, "the demo")),
    }
}

async fn demo(global: &Global, args: Args) -> CliResult {
    let started = Instant::now();
    let say = Narrator { json: global.json };

    // With --server (or NATS_URL) the demo uses that server; otherwise it runs its own.
    let (_server, url) = match &global.server {
        Some(url) => (None, url.clone()),
        None => {
            say.step("starting a local nats-server with JetStream");
            let server = LocalServer::start(0, None).await?;
            let url = server.url();
            say.line(&format!("listening on {url}"));
            (Some(server), url)
        }
    };
    let global = Global {
        server: Some(url.clone()),
        ..global.clone()
    };
    // Every step but plain RPC needs JetStream: find out at once, not in step two.
    global.connect_jetstream().await?;

    let mut report = serde_json::Map::new();
    report.insert("server".into(), json!(url));

    let rpc = rpc::run(
        &global,
        &say,
        usize::try_from(args.calls).unwrap_or(usize::MAX),
    )
    .await?;
    report.insert("rpc".into(), rpc);
    report.insert("events".into(), events::run(&global, &say).await?);
    report.insert("command".into(), commands::run(&global, &say).await?);
    report.insert("kv".into(), kv::run(&global, &say).await?);
    report.insert("single_active".into(), failover::run(&global, &say).await?);
    report.insert(
        "elapsed_ms".into(),
        json!(started.elapsed().as_millis() as u64),
    );

    let report = Value::Object(report);
    if global.json {
        println!("{report}");
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(report: &Value) {
    let rpc = &report["rpc"];
    println!("\nReport");
    println!(
        "  server                  {}",
        report["server"].as_str().unwrap_or("?")
    );
    println!(
        "  rpc                     {} calls over {} instances, p50 {:.0} us, p99 {:.0} us",
        rpc["calls"],
        rpc["instances"],
        rpc["p50_us"].as_f64().unwrap_or(0.0),
        rpc["p99_us"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  sticky call             {} calls, all to {}",
        rpc["sticky_calls"],
        rpc["sticky_instance"].as_str().unwrap_or("?")
    );
    let events = &report["events"];
    println!(
        "  events                  {} published; compete handled {} (split {}), broadcast {} per instance",
        events["published"], events["compete_total"], events["compete_split"], events["broadcast_each"]
    );
    let command = &report["command"];
    println!(
        "  command                 {} progress updates, result {} in {:.1} ms",
        command["progress_updates"],
        command["result"],
        command["round_trip_ms"].as_f64().unwrap_or(0.0)
    );
    let kv = &report["kv"];
    println!(
        "  kv                      {} watched changes, stale update refused: {}",
        kv["watched_changes"], kv["stale_update_refused"]
    );
    let failover = &report["single_active"];
    println!(
        "  single-active failover  leader {} killed, {} took over in {:.0} ms",
        failover["killed_leader"].as_str().unwrap_or("?"),
        failover["new_leader"].as_str().unwrap_or("?"),
        failover["failover_ms"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  total time              {:.1} s",
        report["elapsed_ms"].as_f64().unwrap_or(0.0) / 1000.0
    );
    println!("everything the demo started is stopped; bye");
}
