//! `aegis bench`: small runs, checking the report's shape and that both sides ran.

use aegis_test_support::NatsServer;
use serde_json::Value;

use crate::support::{run, run_plain};

fn assert_side(side: &Value) {
    let p50 = side["p50_us"].as_f64().unwrap();
    let p90 = side["p90_us"].as_f64().unwrap();
    let p99 = side["p99_us"].as_f64().unwrap();
    let max = side["max_us"].as_f64().unwrap();
    assert!(
        0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max,
        "{side}"
    );
    assert!(side["rate_per_s"].as_f64().unwrap() > 0.0, "{side}");
}

#[test]
fn bench_compares_the_sdk_with_raw_async_nats() {
    let server = NatsServer::start();
    let url = server.url();
    for kind in ["rpc", "events", "commands"] {
        let report = run(
            &url,
            &[
                "bench",
                kind,
                "--count",
                "30",
                "--load",
                "100",
                "--in-flight",
                "8",
                "--json",
            ],
        )
        .ok()
        .json();
        assert_eq!(report["kind"], kind);
        assert_eq!(report["count"], 30);
        for side in ["raw", "sdk"] {
            assert_side(&report[side]);
            let counted: u64 = report[side]["histogram"]
                .as_array()
                .unwrap()
                .iter()
                .map(|bucket| bucket["count"].as_u64().unwrap())
                .sum();
            assert_eq!(
                counted, 30,
                "every sequential operation is in the histogram"
            );
        }
        for ratio in ["p50", "p90", "p99", "max", "rate"] {
            assert!(report["ratios"][ratio].as_f64().unwrap() > 0.0, "{report}");
        }
    }
    // The raw side cleans up after itself.
    let streams = server.monitor_get("/jsz?streams=true").unwrap();
    assert!(!streams.contains("AEGIS_BENCH_RAW"), "{streams}");
}

#[test]
fn bench_runs_its_own_server_by_default() {
    let text = run_plain(&["bench", "rpc", "--count", "20", "--load", "50"])
        .ok()
        .stdout;
    for expected in [
        "raw async-nats",
        "aegis-sdk",
        "sdk/raw",
        "latency p50",
        "latency p99",
        "latency max",
        "throughput",
        "histogram",
    ] {
        assert!(text.contains(expected), "{expected:?} missing: {text}");
    }
    run_plain(&["bench", "mail"]).error(2);
    run_plain(&["bench", "rpc", "--count", "0"]).error(2);
}
