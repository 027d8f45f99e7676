//! `aegis server`: a local nats-server with JetStream until Ctrl-C.

use std::path::Path;
use std::time::{Duration, Instant};

use aegis_test_support::NatsServer;

use crate::support::{eventually, listening, run, run_plain, Spawned};

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

#[test]
fn a_port_taken_by_another_server_fails_with_nats_servers_own_error() {
    let other = NatsServer::start();
    let data = tempfile_dir();
    let port = other.port().to_string();
    let failed = run_plain(&[
        "server",
        "--port",
        &port,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let line = failed.error(1);
    assert!(line.contains("address already in use"), "{failed:?}");
    assert!(line.contains("nats-server could not start"), "{failed:?}");
    assert!(!failed.stdout.contains("running at"), "{failed:?}");
    assert!(failed.elapsed < Duration::from_secs(10), "{failed:?}");
    // The other server is untouched.
    run(&other.url(), &["kv", "put", "b", "k", "v"]).ok();
    let _ = std::fs::remove_dir_all(&data);
}

/// Starts `aegis server --port 0 --json` and returns it with the URL it printed.
fn start_on_any_port(data: &Path) -> (Spawned, String) {
    let running = Spawned::start_plain(&[
        "server",
        "--port",
        "0",
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
    ]);
    let line = running
        .next_line(Duration::from_secs(15))
        .expect("the server's URL");
    let started: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = started["url"].as_str().unwrap().to_owned();
    (running, url)
}

#[test]
fn port_0_picks_a_free_port_and_sigterm_and_sighup_stop_the_server() {
    for signal in ["TERM", "HUP"] {
        let data = tempfile_dir();
        let (running, url) = start_on_any_port(&data);
        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        assert_ne!(port, 0, "{url}");
        run(&url, &["kv", "put", "b", "k", "v"]).ok();

        running.signal(signal);
        let (code, _) = running.finish(Duration::from_secs(10));
        assert_eq!(code, Some(0), "SIG{signal}");
        // Its nats-server is gone with it.
        assert!(!listening(&url), "SIG{signal}: {url} still listening");
        let _ = std::fs::remove_dir_all(&data);
    }
}

#[test]
fn the_server_dying_later_is_noticed() {
    let data = tempfile_dir();
    let (running, url) = start_on_any_port(&data);
    let pid = nats_server_pid(&data).expect("the nats-server child");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let line = eventually(Duration::from_secs(10), || {
        running.next_stderr(Duration::from_millis(100))
    });
    // --json: the error is a JSON object too.
    let error: serde_json::Value = serde_json::from_str(&line).unwrap();
    let message = error["message"].as_str().unwrap();
    assert!(message.starts_with("nats-server exited"), "{line}");
    assert!(message.contains("SIGKILL"), "{line}");
    let (code, _) = running.finish(Duration::from_secs(10));
    assert_eq!(code, Some(1));
    assert!(!listening(&url));
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn the_server_dies_with_aegis_even_on_sigkill() {
    let data = tempfile_dir();
    let (running, url) = start_on_any_port(&data);
    assert!(listening(&url));
    running.signal("KILL");
    let started = Instant::now();
    eventually(Duration::from_secs(10), || (!listening(&url)).then_some(()));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(nats_server_pid(&data), None);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn the_demo_cleans_up_on_every_stop_signal() {
    for (signal, code) in [("TERM", 143), ("HUP", 129), ("INT", 130)] {
        let demo = Spawned::start_plain(&["demo", "--calls", "100000"]);
        let url = eventually(Duration::from_secs(15), || {
            let line = demo.next_line(Duration::from_millis(100))?;
            line.trim().strip_prefix("listening on ").map(str::to_owned)
        });
        let folder = std::env::temp_dir().join(format!("aegis-demo-{}-0", demo.pid()));
        assert!(folder.is_dir(), "{folder:?}");
        assert!(listening(&url));
        // Signal it while it works.
        std::thread::sleep(Duration::from_millis(300));
        demo.signal(signal);
        let line = eventually(Duration::from_secs(10), || {
            demo.next_stderr(Duration::from_millis(100))
        });
        assert!(line.contains(&format!("stopped by SIG{signal}")), "{line}");
        let (exit, _) = demo.finish(Duration::from_secs(10));
        assert_eq!(exit, Some(code), "SIG{signal}");
        assert!(!folder.exists(), "SIG{signal}: {folder:?} left behind");
        assert!(!listening(&url), "SIG{signal}: {url} still listening");
        assert_eq!(nats_server_pid(&folder), None);
    }
}

/// The pid of a nats-server process storing its data in `data`, if one runs.
fn nats_server_pid(data: &Path) -> Option<u32> {
    let data = data.to_str().unwrap();
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_server = args
            .first()
            .is_some_and(|program| program.ends_with(b"nats-server"));
        let stores_there = args.contains(&data.as_bytes());
        // A process already killed but not reaped yet has an empty command line.
        (is_server && stores_there).then_some(pid)
    })
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
