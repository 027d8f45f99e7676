//! `aegis server`: a local nats-server with JetStream until Ctrl-C.

use std::time::Duration;

use crate::support::{run, Spawned};

#[test]
fn server_runs_nats_until_ctrl_c() {
    let data = tempfile_dir();
    let port = aegis_test_support::free_port().to_string();
    let data_dir = data.to_str().unwrap();
    let running = Spawned::start(
        "nats://127.0.0.1:1",
        &["server", "--port", &port, "--data-dir", data_dir, "--json"],
    );
    let line = running
        .next_line(Duration::from_secs(15))
        .expect("the server's URL");
    let started: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = started["url"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("nats://127.0.0.1:{port}"));

    // A usable server with JetStream, keeping its data in the folder given.
    run(&url, &["kv", "put", "b", "k", "v"]).ok();
    assert!(
        std::fs::read_dir(&data).unwrap().next().is_some(),
        "no JetStream data"
    );

    running.interrupt();
    let (code, _) = running.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    run(&url, &["kv", "get", "b", "k"]).error(1);
    let _ = std::fs::remove_dir_all(&data);
}

/// A fresh folder under the system's temporary directory.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "aegis-cli-test-{}-{}",
        std::process::id(),
        aegis_test_support::free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
