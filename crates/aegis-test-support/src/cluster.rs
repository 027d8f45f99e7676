//! An n-node JetStream cluster of `nats-server` child processes.

use std::fmt::Write as _;
use std::thread;
use std::time::{Duration, Instant};

use crate::binary::{reserve_port, unique_name};
use crate::http;
use crate::server::{
    ClusterSpec, NatsServer, Spec, StartFailure, POLL_INTERVAL, START_ATTEMPTS, START_TIMEOUT,
};

/// How long a cluster may take until JetStream is ready cluster-wide.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);

/// An n-node `nats-server` cluster on loopback: every node has JetStream with its own
/// temporary store directory, routes to all other nodes and a unique `server_name`; the
/// cluster name is unique per cluster.
///
/// Dropping the cluster kills all nodes and removes their temporary directories.
#[derive(Debug)]
pub struct NatsCluster {
    name: String,
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts an `n`-node cluster and waits until every node is up and JetStream is ready
    /// cluster-wide (see [`wait_healthy`](Self::wait_healthy)).
    ///
    /// # Panics
    ///
    /// Panics if `n < 2`, or if the cluster is not ready within 30 s (the message has each
    /// node's state and log tail).
    pub fn start(n: usize) -> NatsCluster {
        assert!(
            n >= 2,
            "a NatsCluster needs at least 2 nodes (got {n}); use NatsServer for one"
        );
        for attempt in 1..=START_ATTEMPTS {
            let name = unique_name("aegis-test-cluster");
            let ports: Vec<(u16, u16, u16)> = (0..n)
                .map(|_| (reserve_port(), reserve_port(), reserve_port()))
                .collect();
            let mut nodes: Vec<NatsServer> = ports
                .iter()
                .enumerate()
                .map(|(i, &(port, monitor_port, route_port))| {
                    NatsServer::prepare(Spec {
                        name: format!("{name}-n{i}"),
                        port,
                        monitor_port,
                        jetstream: true,
                        max_payload: None,
                        extra: String::new(),
                        cluster: Some(ClusterSpec {
                            name: name.clone(),
                            port: route_port,
                            routes: ports
                                .iter()
                                .filter(|other| other.2 != route_port)
                                .map(|other| other.2)
                                .collect(),
                        }),
                    })
                })
                .collect();
            for node in &mut nodes {
                node.spawn();
            }
            let failed: Option<(usize, StartFailure)> =
                nodes.iter().enumerate().find_map(|(i, node)| {
                    node.wait_ready(START_TIMEOUT, node.health_path())
                        .err()
                        .map(|failure| (i, failure))
                });
            match failed {
                None => {
                    let cluster = NatsCluster { name, nodes };
                    cluster.wait_healthy_within(CLUSTER_TIMEOUT);
                    return cluster;
                }
                Some((_, failure)) if failure.port_in_use && attempt < START_ATTEMPTS => {
                    tracing::debug!(
                        attempt,
                        "nats-server cluster port was taken, retrying with new ports"
                    );
                }
                Some((i, failure)) => panic!("cluster node {i}: {}", nodes[i].report(&failure)),
            }
        }
        unreachable!("the last start attempt either returns or panics")
    }

    /// The cluster name (shared by all nodes).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client URLs of all nodes, in node order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// All nodes.
    pub fn nodes(&self) -> &[NatsServer] {
        &self.nodes
    }

    /// Node `i`.
    ///
    /// # Panics
    ///
    /// Panics if `i` is out of range.
    pub fn node(&self, i: usize) -> &NatsServer {
        &self.nodes[i]
    }

    /// Node `i`, mutably (to [`stop`](NatsServer::stop) or
    /// [`restart`](NatsServer::restart) it).
    ///
    /// # Panics
    ///
    /// Panics if `i` is out of range.
    pub fn node_mut(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    /// Waits (up to 30 s) until every *running* node reports healthy on `/healthz`
    /// (which includes contact with the JetStream meta leader), has routes to all other
    /// running nodes, and all of them agree on an elected meta leader. Use it after
    /// restarting nodes.
    ///
    /// # Panics
    ///
    /// Panics if no node is running, or on timeout (with each node's state and log tail).
    pub fn wait_healthy(&self) {
        self.wait_healthy_within(CLUSTER_TIMEOUT);
    }

    fn wait_healthy_within(&self, timeout: Duration) {
        let started = Instant::now();
        loop {
            let states = self.node_states();
            if states.iter().all(|state| state.ok) {
                tracing::debug!(
                    cluster = %self.name,
                    elapsed_ms = started.elapsed().as_millis(),
                    "nats-server cluster ready"
                );
                return;
            }
            if started.elapsed() > timeout {
                let mut report = format!(
                    "nats-server cluster {} not healthy within {timeout:?}\n",
                    self.name
                );
                for (state, node) in states.iter().zip(&self.nodes) {
                    let _ = writeln!(
                        report,
                        "=== node {} (port {}): {}",
                        node.name(),
                        node.port(),
                        state.summary
                    );
                    if node.is_running() {
                        report.push_str(&node.output_tail(15));
                    }
                }
                panic!("{report}");
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn node_states(&self) -> Vec<NodeState> {
        let running: Vec<&str> = self
            .nodes
            .iter()
            .filter(|node| node.is_running())
            .map(NatsServer::name)
            .collect();
        assert!(
            !running.is_empty(),
            "nats-server cluster {}: no node is running",
            self.name
        );
        let mut leaders = Vec::new();
        let mut states: Vec<NodeState> = self
            .nodes
            .iter()
            .map(|node| {
                if !node.is_running() {
                    return NodeState {
                        ok: true,
                        summary: "stopped".to_owned(),
                    };
                }
                let (state, leader) = node_state(node, &running);
                leaders.extend(leader);
                state
            })
            .collect();
        // Every running node must know the same meta leader.
        let agreed =
            leaders.len() == running.len() && leaders.windows(2).all(|pair| pair[0] == pair[1]);
        if !agreed {
            for state in states
                .iter_mut()
                .filter(|state| state.ok && state.summary != "stopped")
            {
                state.ok = false;
                state.summary = format!("meta leaders disagree: {leaders:?}");
            }
        }
        states
    }
}

/// Readiness of one node, for polling and for the timeout report.
#[derive(Debug)]
struct NodeState {
    ok: bool,
    summary: String,
}

/// Checks one running node: full `/healthz`, routes to all other running nodes, and the
/// meta leader it knows (returned).
fn node_state(node: &NatsServer, running: &[&str]) -> (NodeState, Option<String>) {
    let not_ok = |summary: String| (NodeState { ok: false, summary }, None);
    let port = node.monitor_port();
    match http::get(port, "/healthz") {
        Ok((200, body)) if body.contains("\"ok\"") => {}
        Ok((status, body)) => return not_ok(format!("/healthz {status} {}", body.trim())),
        Err(err) => return not_ok(format!("/healthz: {err}")),
    }
    let remotes = match http::get(port, "/routez") {
        Ok((200, body)) => http::json_strs(&body, "remote_name"),
        Ok((status, _)) => return not_ok(format!("/routez {status}")),
        Err(err) => return not_ok(format!("/routez: {err}")),
    };
    let missing: Vec<&str> = running
        .iter()
        .copied()
        .filter(|name| *name != node.name() && !remotes.iter().any(|remote| remote == name))
        .collect();
    if !missing.is_empty() {
        return not_ok(format!("no route to {missing:?} yet"));
    }
    let leader = match http::get(port, "/jsz") {
        Ok((200, body)) => http::json_str(&body, "leader").filter(|leader| !leader.is_empty()),
        Ok((status, _)) => return not_ok(format!("/jsz {status}")),
        Err(err) => return not_ok(format!("/jsz: {err}")),
    };
    match leader {
        Some(leader) => (
            NodeState {
                ok: true,
                summary: format!("healthy, meta leader {leader}"),
            },
            Some(leader),
        ),
        None => not_ok("no meta leader yet".to_owned()),
    }
}
