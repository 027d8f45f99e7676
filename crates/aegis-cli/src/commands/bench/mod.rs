//! `aegis bench rpc|events|commands`: the SDK side by side with raw async-nats doing the
//! same work in the same run, against one server (its own unless `--server` is given).
//!
//! Each side runs the same two phases: sequential operations for the latency histogram
//! (p50, p90, p99, max), then `--load` operations with `--in-flight` at once for the
//! throughput. The sides alternate phase by phase, so drift on a shared machine hits
//! both alike; the ratios (SDK / raw) are what to read, not the absolute numbers. The
//! library's `cargo bench` suites measure more (CPU per call, larger runs).

mod commands;
mod events;
mod rpc;

use std::future::Future;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};

use crate::local_server::LocalServer;
use crate::output::{interrupted, print_json, CliError, CliResult};
use crate::Global;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    /// Request/reply: `client.call` against a core request to a queue subscriber.
    Rpc,
    /// Event publish, awaiting the stream's ack: `EventPublisher` against a JetStream
    /// publish with the same deduplication id.
    Events,
    /// Command round trip (send, run, result back): `send_command` against a raw
    /// work queue with a worker that acks and replies.
    Commands,
}

/// Arguments of `aegis bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// What to measure.
    #[arg(value_enum)]
    kind: Kind,
    /// Sequential operations per side, for the latency histogram (default: rpc 2000,
    /// events 1000, commands 300).
    #[arg(long, value_parser = crate::output::positive)]
    count: Option<u64>,
    /// Operations per side for the throughput (default: rpc and events 10000,
    /// commands 2000).
    #[arg(long, value_parser = crate::output::positive)]
    load: Option<u64>,
    /// Operations in flight at once during the throughput phase.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    in_flight: u64,
}

/// The sizes of one run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sizes {
    count: usize,
    load: usize,
    in_flight: usize,
}

/// One side's operation: called once per measured operation.
pub(super) trait Operation: Fn() -> Self::Fut + Clone {
    type Fut: Future<Output = CliResult>;
}

impl<F, Fut> Operation for F
where
    F: Fn() -> Fut + Clone,
    Fut: Future<Output = CliResult>,
{
    type Fut = Fut;
}

/// What one side measured.
pub(super) struct Figures {
    /// Sequential latencies, sorted.
    latencies: Vec<Duration>,
    /// Operations per second with `in_flight` at once.
    rate: f64,
}

/// Measures both sides, alternating: a warm-up, the sequential phase, the loaded phase.
pub(super) async fn compare(
    sizes: Sizes,
    raw: impl Operation,
    sdk: impl Operation,
) -> CliResult<(Figures, Figures)> {
    let warm_up = (sizes.count / 10).clamp(10, 200);
    sequential(warm_up, &raw).await?;
    sequential(warm_up, &sdk).await?;
    let mut raw_latencies = sequential(sizes.count, &raw).await?;
    let mut sdk_latencies = sequential(sizes.count, &sdk).await?;
    raw_latencies.sort_unstable();
    sdk_latencies.sort_unstable();
    let raw_rate = loaded(sizes, &raw).await?;
    let sdk_rate = loaded(sizes, &sdk).await?;
    Ok((
        Figures {
            latencies: raw_latencies,
            rate: raw_rate,
        },
        Figures {
            latencies: sdk_latencies,
            rate: sdk_rate,
        },
    ))
}

async fn sequential(count: usize, operation: &impl Operation) -> CliResult<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        operation().await?;
        latencies.push(started.elapsed());
    }
    Ok(latencies)
}

async fn loaded(sizes: Sizes, operation: &impl Operation) -> CliResult<f64> {
    let started = Instant::now();
    futures::stream::iter(0..sizes.load)
        .map(Ok)
        .try_for_each_concurrent(sizes.in_flight, |_| operation())
        .await?;
    Ok(sizes.load as f64 / started.elapsed().as_secs_f64())
}

/// The `p`-quantile of sorted durations.
fn quantile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// Upper bounds of the histogram buckets, in microseconds; the last bucket is open.
const BUCKETS_US: [u64; 9] = [50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000];

/// How many latencies fall into each bucket of [`BUCKETS_US`], plus one open bucket.
fn histogram(sorted: &[Duration]) -> Vec<usize> {
    let mut counts = vec![0; BUCKETS_US.len() + 1];
    for latency in sorted {
        let us = micros(*latency);
        let bucket = BUCKETS_US
            .iter()
            .position(|bound| us <= *bound as f64)
            .unwrap_or(BUCKETS_US.len());
        counts[bucket] += 1;
    }
    counts
}

const QUANTILES: [(&str, f64); 4] = [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0)];

fn figures_json(figures: &Figures) -> Value {
    let mut object = serde_json::Map::new();
    for (name, p) in QUANTILES {
        object.insert(
            format!("{name}_us"),
            json!(micros(quantile(&figures.latencies, p))),
        );
    }
    object.insert("rate_per_s".into(), json!(figures.rate));
    let buckets: Vec<Value> = histogram(&figures.latencies)
        .into_iter()
        .enumerate()
        .map(|(i, count)| json!({"le_us": BUCKETS_US.get(i), "count": count}))
        .collect();
    object.insert("histogram".into(), Value::Array(buckets));
    Value::Object(object)
}

pub(crate) async fn run(global: &Global, args: Args) -> CliResult {
    let (count, load) = match args.kind {
        Kind::Rpc => (2_000, 10_000),
        Kind::Events => (1_000, 10_000),
        Kind::Commands => (300, 2_000),
    };
    let sizes = Sizes {
        count: args.count.unwrap_or(count) as usize,
        load: args.load.unwrap_or(load) as usize,
        in_flight: args.in_flight as usize,
    };

    // Against --server (or NATS_URL) if given, else a server of its own.
    let (_server, global) = match &global.server {
        Some(_) => (None, global.clone()),
        None => {
            let server = LocalServer::start(0, None).await?;
            let global = Global {
                server: Some(server.url()),
                ..global.clone()
            };
            (Some(server), global)
        }
    };
    if !matches!(args.kind, Kind::Rpc) {
        // Events and commands live in JetStream: say so at once if it is off.
        global.connect_jetstream().await?;
    }
    // A signal stops the benchmark and, with it, everything it started.
    let stop = interrupted();
    let measured = async {
        match args.kind {
            Kind::Rpc => rpc::run(&global, sizes).await,
            Kind::Events => events::run(&global, sizes).await,
            Kind::Commands => commands::run(&global, sizes).await,
        }
    };
    let (raw, sdk) = tokio::select! {
        measured = measured => measured?,
        signal = stop => return Err(CliError::stopped_by(signal, "the benchmark")),
    };
    report(global.json, args.kind, sizes, &raw, &sdk);
    Ok(())
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Rpc => "rpc",
        Kind::Events => "events",
        Kind::Commands => "commands",
    }
}

fn report(as_json: bool, kind: Kind, sizes: Sizes, raw: &Figures, sdk: &Figures) {
    let ratio = |sdk: f64, raw: f64| if raw > 0.0 { sdk / raw } else { 0.0 };
    if as_json {
        let mut ratios = serde_json::Map::new();
        for (name, p) in QUANTILES {
            ratios.insert(
                name.into(),
                json!(ratio(
                    micros(quantile(&sdk.latencies, p)),
                    micros(quantile(&raw.latencies, p))
                )),
            );
        }
        ratios.insert("rate".into(), json!(ratio(sdk.rate, raw.rate)));
        print_json(&json!({
            "kind": kind_name(kind),
            "count": sizes.count,
            "load": sizes.load,
            "in_flight": sizes.in_flight,
            "raw": figures_json(raw),
            "sdk": figures_json(sdk),
            "ratios": ratios,
        }));
        return;
    }

    if cfg!(debug_assertions) {
        println!(
            "note: a debug build; `cargo run --release -p aegis-cli -- bench ...` for real numbers"
        );
    }
    println!(
        "{} benchmark: {} sequential, then {} with {} in flight, per side",
        kind_name(kind),
        sizes.count,
        sizes.load,
        sizes.in_flight
    );
    println!(
        "{:<14} {:>14} {:>14} {:>8}",
        "", "raw async-nats", "aegis-sdk", "sdk/raw"
    );
    for (name, p) in QUANTILES {
        let (r, s) = (
            micros(quantile(&raw.latencies, p)),
            micros(quantile(&sdk.latencies, p)),
        );
        println!(
            "{:<14} {:>11.0} us {:>11.0} us {:>8.2}",
            format!("latency {name}"),
            r,
            s,
            ratio(s, r)
        );
    }
    println!(
        "{:<14} {:>11.0} /s {:>11.0} /s {:>8.2}",
        "throughput",
        raw.rate,
        sdk.rate,
        ratio(sdk.rate, raw.rate)
    );

    println!("\nlatency histogram (share of sequential operations)");
    let (raw_counts, sdk_counts) = (histogram(&raw.latencies), histogram(&sdk.latencies));
    let bar = |count: usize, total: usize| {
        let share = count as f64 / total.max(1) as f64;
        format!(
            "{:<20} {:>5.1}%",
            "#".repeat((share * 20.0).round() as usize),
            share * 100.0
        )
    };
    for i in 0..raw_counts.len() {
        if raw_counts[i] == 0 && sdk_counts[i] == 0 {
            continue;
        }
        let label = match BUCKETS_US.get(i) {
            Some(bound) => format!("<= {bound} us"),
            None => format!("> {} us", BUCKETS_US[BUCKETS_US.len() - 1]),
        };
        println!(
            "{label:>12}  raw {}  sdk {}",
            bar(raw_counts[i], raw.latencies.len()),
            bar(sdk_counts[i], sdk.latencies.len())
        );
    }
}

/// A raw async-nats connection for the baseline, with the same server and credentials
/// as the SDK side (the SDK maps its options the same way).
pub(super) async fn raw_connect(global: &Global) -> CliResult<async_nats::Client> {
    let url = global.url();
    let mut options = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .request_timeout(Some(Duration::from_secs(10)));
    if let (Some(user), Some(password)) = (&global.user, &global.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &global.token {
        options = options.token(token.clone());
    }
    if let Some(seed) = &global.nkey {
        options = options.nkey(seed.clone());
    }
    if let Some(path) = &global.creds {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    }
    let servers: Vec<&str> = url.split(',').map(str::trim).collect();
    options
        .connect(servers)
        .await
        .map_err(|e| CliError::new(format!("cannot connect to {url}: {e}")))
}

/// A failed benchmark operation as one line.
pub(super) fn failed(side: &str, error: impl std::fmt::Display) -> CliError {
    CliError::new(format!("{side} operation failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_histogram() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(quantile(&sorted, 0.5), Duration::from_micros(51));
        assert_eq!(quantile(&sorted, 1.0), Duration::from_micros(100));
        let counts = histogram(&sorted);
        assert_eq!(counts[0], 50);
        assert_eq!(counts[1], 50);
        assert_eq!(counts.iter().sum::<usize>(), 100);
    }
}
