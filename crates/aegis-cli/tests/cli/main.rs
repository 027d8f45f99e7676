//! The `aegis` binary end to end, as a user runs it: each subcommand against a real
//! nats-server started by the test, with the services it needs run in-process.

mod bench;
mod commands;
mod errors;
mod events;
mod kv;
mod leader;
mod server;
mod services;
mod support;

use aegis_test_support::NatsServer;
use serde_json::Value;
use support::aegis;

#[test]
fn demo_runs_everything_on_its_own_server_and_exits_zero() {
    let output = aegis()
        .args(["demo", "--json", "--calls", "60"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(report["rpc"]["calls"], 60);
    assert_eq!(report["rpc"]["instances"], 3);
    assert_eq!(report["rpc"]["unknown_service_error"], "no_responders");
    assert_eq!(report["rpc"]["registry_listed"], 3);
    assert_eq!(report["rpc"]["sticky_instance"], "echo-service-demo1");
    assert_eq!(report["events"]["compete_total"], 40);
    assert_eq!(report["events"]["broadcast_each"], 40);
    assert_eq!(report["command"]["progress_updates"], 11);
    assert_eq!(report["command"]["result"]["status"], "done");
    assert_eq!(report["kv"]["stale_update_refused"], true);
    assert_eq!(report["kv"]["watched_changes"], 3);
    let failover = &report["single_active"];
    assert_ne!(failover["killed_leader"], failover["new_leader"]);
    assert!(failover["new_token"].as_u64() > failover["old_token"].as_u64());
}

#[test]
fn call_prints_the_result_or_one_line_and_a_non_zero_exit() {
    let server = NatsServer::start();

    // Nobody serves it: one line naming the kind, exit 1.
    let output = aegis()
        .args(["--server", &server.url(), "call", "nobody", "ping"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no_responders"), "{stderr}");

    // Bad JSON is a usage error: one line, exit 2.
    let output = aegis()
        .args(["--server", &server.url(), "call", "svc", "m", "{not json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not valid JSON"));

    // Unreachable server: one line, exit 1.
    let port = aegis_test_support::free_port();
    let output = aegis()
        .args([
            "--server",
            &format!("nats://127.0.0.1:{port}"),
            "call",
            "svc",
            "m",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&output.stderr).lines().count(), 1);

    // Usage errors exit 2.
    let output = aegis().args(["call"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}
