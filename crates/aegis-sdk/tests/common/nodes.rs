//! Election nodes as child processes (`aegis-election-node`, built by cargo for tests and
//! benches of this package), with their stdout lines collected for assertions.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis_sdk::{Client, ErrorKind};
use aegis_test_support::NatsServer;
use serde_json::{json, Value};

/// The node program; cargo builds `[[bin]]` targets before tests and benches that use them.
pub(crate) const NODE_BIN: &str = env!("CARGO_BIN_EXE_aegis-election-node");

/// One running (or killed) node process.
pub(crate) struct Node {
    pub(crate) instance: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Node {
    pub(crate) fn spawn(url: &str, service: &str, instance: &str, policy: &str) -> Node {
        let mut child = Command::new(NODE_BIN)
            .args([url, service, instance, policy])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn aegis-election-node");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Node {
            instance: instance.to_owned(),
            child,
            lines,
        }
    }

    pub(crate) fn pid(&self) -> String {
        self.child.id().to_string()
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Lines starting with `prefix` (and a space), without the prefix.
    pub(crate) fn facts(&self, prefix: &str) -> Vec<String> {
        let prefix = format!("{prefix} ");
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    pub(crate) fn count(&self, line: &str) -> usize {
        self.lines().iter().filter(|l| *l == line).count()
    }

    /// Waits until a line satisfying `pred` was printed.
    pub(crate) fn wait_for(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.lines().iter().any(|l| pred(l)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// SIGKILL, and wait until the process is gone.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGKILL, then wait until `server` has dropped the dead connection.
    ///
    /// A request published before the server notices the crash is routed to the dead
    /// instance's subscription and lost. The SDK retries such silence for methods it
    /// knows to be exclusive (see `calls_right_after_a_leader_is_killed...`), but not
    /// for a first call or an ordinary method (that call may have run); the tests that
    /// measure the election itself start calling once the server knows.
    pub(crate) fn crash(&mut self, server: &NatsServer) {
        let before = connections(server);
        self.kill();
        let end = Instant::now() + Duration::from_secs(10);
        while connections(server) >= before && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits for the process to exit by itself (after SIGTERM).
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A frozen process must be thawed to die cleanly; SIGKILL works either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many client connections `server` has.
pub(crate) fn connections(server: &NatsServer) -> usize {
    let body = server.monitor_get("/connz").expect("connz");
    let connz: Value = serde_json::from_str(&body).expect("connz json");
    connz["num_connections"].as_u64().expect("num_connections") as usize
}

/// The fencing token if `instance` leads now, `None` if it refuses (or does not answer).
pub(crate) async fn probe(client: &Client, service: &str, instance: &str) -> Option<u64> {
    let reply = client
        .call::<_, Value>(service, "whoami", json!({}))
        .instance(instance)
        .timeout(Duration::from_millis(500))
        .await;
    match reply {
        Ok(value) => value["token"].as_u64(),
        Err(error) => {
            assert!(
                matches!(
                    error.kind(),
                    ErrorKind::NotActive | ErrorKind::NoResponders | ErrorKind::Timeout
                ),
                "unexpected probe error {error}"
            );
            None
        }
    }
}

/// The instances among `instances` that lead now.
pub(crate) async fn leaders(client: &Client, service: &str, instances: &[&str]) -> Vec<String> {
    let mut leaders = Vec::new();
    for instance in instances {
        if probe(client, service, instance).await.is_some() {
            leaders.push((*instance).to_owned());
        }
    }
    leaders
}

/// Waits until exactly one of `instances` leads, and returns it.
pub(crate) async fn await_leader(
    client: &Client,
    service: &str,
    instances: &[&str],
    timeout: Duration,
) -> String {
    let end = Instant::now() + timeout;
    loop {
        let found = leaders(client, service, instances).await;
        assert!(found.len() <= 1, "two leaders at once: {found:?}");
        if let [leader] = found.as_slice() {
            return leader.clone();
        }
        assert!(Instant::now() < end, "no leader within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls the exclusive `work` method (unpinned: the SDK finds the leader) until it
/// succeeds on an instance other than `old`, and returns how long that took.
pub(crate) async fn await_new_leader_serving(
    client: &Client,
    service: &str,
    old: &str,
) -> Duration {
    let start = Instant::now();
    loop {
        let reply = client
            .call::<_, Value>(service, "work", json!({"call_id": "probe"}))
            .timeout(Duration::from_secs(5))
            .await;
        if let Ok(value) = reply {
            if value["instance"] != old {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no new leader served within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
