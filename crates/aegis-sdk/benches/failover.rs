//! Failover time of single-active services: a leader process is killed (SIGKILL, no
//! clean-up) 20 times for each policy, and stopped gracefully (SIGTERM, it hands over)
//! 20 times; each sample is the time from the signal until a standby served an exclusive
//! call made through the SDK client (which retries during the failover). After a kill,
//! the first call waits until nats-server has dropped the dead connection (a request
//! sent before that is lost with the process); that wait is part of the sample.
//!
//! Run: `cargo bench -p aegis-sdk --bench failover` (about 2 minutes). The instances are
//! `aegis-election-node` processes (tests/support/election_node.rs) on a nats-server of
//! their own.
#![allow(clippy::print_stdout)]

#[path = "../tests/common/nodes.rs"]
mod nodes;

use std::time::Duration;

use aegis_sdk::{Client, ConnectOptions};
use aegis_test_support::NatsServer;
use nodes::{await_leader, await_new_leader_serving, Node};

const SERVICE: &str = "failover-bench";

#[derive(Clone, Copy)]
enum Stop {
    Kill,
    Graceful,
}

async fn measure(policy: &str, stop: Stop, rounds: usize) -> Vec<Duration> {
    let server = NatsServer::start();
    let client = Client::connect(&ConnectOptions::new(server.url()))
        .await
        .expect("connect");
    let mut next_id = 0;
    let mut spawn = |server: &NatsServer| {
        next_id += 1;
        let node = Node::spawn(
            &server.url(),
            SERVICE,
            &format!("{policy}-{next_id}"),
            policy,
        );
        assert!(node.wait_for(|l| l == "READY", Duration::from_secs(10)));
        node
    };
    let mut nodes: Vec<Node> = (0..3).map(|_| spawn(&server)).collect();

    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let ids: Vec<&str> = nodes.iter().map(|n| n.instance.as_str()).collect();
        let leader = await_leader(&client, SERVICE, &ids, Duration::from_secs(15)).await;
        let index = nodes.iter().position(|n| n.instance == leader).unwrap();
        // Let the leader settle into its renewal rhythm at an arbitrary phase.
        tokio::time::sleep(Duration::from_millis(150 + samples.len() as u64 * 17 % 200)).await;

        match stop {
            Stop::Kill => nodes[index].crash(&server),
            Stop::Graceful => nodes[index].signal("-TERM"),
        }
        samples.push(await_new_leader_serving(&client, SERVICE, &leader).await);
        if let Stop::Graceful = stop {
            nodes[index].wait_exit(Duration::from_secs(10));
        }
        nodes[index] = spawn(&server);
    }
    samples
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this too, without
    // it, and then gets a quick smoke run instead of the 2-minute measurement.
    let full = std::env::args().any(|arg| arg == "--bench");
    let rounds = if full { 20 } else { 2 };
    let mut cases = vec![
        ("crash", "aggressive", Stop::Kill),
        ("crash", "balanced", Stop::Kill),
        ("crash", "conservative", Stop::Kill),
        ("graceful", "balanced", Stop::Graceful),
    ];
    if !full {
        cases.retain(|(_, policy, _)| *policy != "conservative");
    }
    println!(
        "{:<10} {:<13} {:>3} {:>10} {:>10} {:>10}",
        "stop", "policy", "n", "p50", "p99", "max"
    );
    for (kind, policy, stop) in cases {
        let mut samples = runtime.block_on(measure(policy, stop, rounds));
        samples.sort();
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        println!(
            "{:<10} {:<13} {:>3} {:>10} {:>10} {:>10}",
            kind,
            policy,
            samples.len(),
            ms(percentile(&samples, 0.50)),
            ms(percentile(&samples, 0.99)),
            ms(*samples.last().unwrap()),
        );
    }
}
