//! Single-active services end to end: leader election over a real nats-server, with the
//! instances as separate processes so that they can be killed and frozen.
//!
//! The instances run `aegis-election-node` (tests/support/election_node.rs), a `[[bin]]`
//! of this package: cargo builds it before running these tests, also under
//! `cargo test -p aegis-sdk --test election`, and passes its path in
//! `CARGO_BIN_EXE_aegis-election-node`. Each node prints what happens to it (`ELECTED`,
//! `LOST`, `EXEC <call-id> <token>` for every exclusive call it ran), which is what the
//! tests assert on; timings are printed, and only bounded generously.

// The issue asks for measured failover times to be reported: they go to stderr.
#![allow(clippy::print_stderr)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use aegis_sdk::{Client, ConnectOptions, ErrorKind};
use aegis_test_support::NatsServer;
use common::nodes::{await_leader, await_new_leader_serving, leaders, probe, Node};
use serde_json::{json, Value};

const SERVICE: &str = "ledger-service";

async fn connect(server: &NatsServer) -> Client {
    Client::connect(&ConnectOptions::new(server.url()))
        .await
        .expect("connect")
}

fn spawn_nodes(server: &NatsServer, prefix: &str, n: usize, policy: &str) -> Vec<Node> {
    let nodes: Vec<Node> = (0..n)
        .map(|i| Node::spawn(&server.url(), SERVICE, &format!("{prefix}-{i}"), policy))
        .collect();
    for node in &nodes {
        assert!(
            node.wait_for(|l| l == "READY", Duration::from_secs(10)),
            "{} did not start: {:?}",
            node.instance,
            node.lines()
        );
    }
    nodes
}

fn ids(nodes: &[Node]) -> Vec<&str> {
    nodes.iter().map(|n| n.instance.as_str()).collect()
}

fn elected(nodes: &[Node]) -> usize {
    nodes.iter().map(|n| n.facts("ELECTED").len()).sum()
}

/// Every answered call ran exactly once, on the instance that answered it, in a term that
/// instance was elected for; fencing tokens never go back.
async fn assert_each_call_ran_once(nodes: &[Node], replies: &[Value]) {
    // A node prints EXEC before it replies, but our reader threads may lag behind the
    // replies: wait until every answered call shows up somewhere.
    let all_execs = || -> Vec<String> { nodes.iter().flat_map(|n| n.facts("EXEC")).collect() };
    let deadline = Instant::now() + Duration::from_secs(5);
    while all_execs().len() < replies.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Every call ran exactly once, on the instance that answered it, in a term that
    // instance was elected for; tokens never go back.
    let mut runs: HashMap<String, Vec<(String, u64)>> = HashMap::new();
    for node in nodes {
        let terms: HashSet<u64> = node
            .facts("ELECTED")
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        for exec in node.facts("EXEC") {
            let (call_id, token) = exec.split_once(' ').unwrap();
            let token: u64 = token.parse().unwrap();
            assert!(
                terms.contains(&token),
                "{} ran outside its terms",
                node.instance
            );
            runs.entry(call_id.to_owned())
                .or_default()
                .push((node.instance.clone(), token));
        }
    }
    let mut last_token = 0;
    for reply in replies {
        let call_id = reply["call_id"].as_str().unwrap();
        let ran = runs.get(call_id).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(ran.len(), 1, "{call_id} ran {} times: {ran:?}", ran.len());
        assert_eq!(ran[0].0, reply["instance"].as_str().unwrap());
        let token = reply["token"].as_u64().unwrap();
        assert!(token >= last_token, "fencing token went back");
        last_token = token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_started_together_elect_exactly_one_leader() {
    for n in [3, 5] {
        let server = NatsServer::start();
        let client = connect(&server).await;
        let nodes = spawn_nodes(&server, &format!("together{n}"), n, "balanced");

        let leader = await_leader(&client, SERVICE, &ids(&nodes), Duration::from_secs(5)).await;
        // Give a second election, if there were going to be one, time to happen.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            leaders(&client, SERVICE, &ids(&nodes)).await,
            vec![leader.clone()]
        );
        assert_eq!(elected(&nodes), 1, "exactly one term among {n} instances");

        // The lease in KV, as the contract lays it out.
        let jetstream =
            async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
        let bucket = jetstream
            .get_key_value("election_ledger_service")
            .await
            .unwrap();
        let value = bucket
            .get("sticky-active.ledger-service.default.leader")
            .await
            .unwrap()
            .expect("leader key");
        let record: Value = serde_json::from_slice(&value).unwrap();
        assert_eq!(record["instance_id"], leader.as_str());
        assert!(record["elected_at"].is_f64() && record["last_heartbeat"].is_f64());
        assert!(record["metadata"].is_object());

        // A standby asked directly refuses with the code Python callers look for.
        let standby = ids(&nodes).into_iter().find(|id| *id != leader).unwrap();
        let refusal = client
            .call::<_, Value>(SERVICE, "work", json!({"call_id": "direct"}))
            .instance(standby)
            .await
            .expect_err("a standby refuses");
        assert_eq!(refusal.kind(), ErrorKind::NotActive);
        assert_eq!(
            refusal.message(),
            format!("NOT_ACTIVE: instance {standby} is standby for group default")
        );

        // Ordinary methods still load-balance over every instance.
        let mut served = HashSet::new();
        for _ in 0..60 {
            let reply: Value = client.call(SERVICE, "status", json!({})).await.unwrap();
            served.insert(reply["instance"].as_str().unwrap().to_owned());
        }
        assert!(served.len() > 1, "status served only by {served:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_and_failover_time_is_reported() {
    for policy in ["balanced", "aggressive"] {
        let server = NatsServer::start();
        let client = connect(&server).await;
        let mut nodes = spawn_nodes(&server, policy, 3, policy);
        let leader = await_leader(&client, SERVICE, &ids(&nodes), Duration::from_secs(5)).await;
        let index = nodes.iter().position(|n| n.instance == leader).unwrap();

        nodes[index].crash(&server);
        let failover = await_new_leader_serving(&client, SERVICE, &leader).await;
        eprintln!("crash failover ({policy}): {failover:?}");
        assert!(failover < Duration::from_secs(5), "{policy}: {failover:?}");

        let live: Vec<&str> = ids(&nodes).into_iter().filter(|id| *id != leader).collect();
        let new_leader = await_leader(&client, SERVICE, &live, Duration::from_secs(5)).await;
        assert_ne!(new_leader, leader);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gracefully_stopped_leader_hands_over() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let mut nodes = spawn_nodes(&server, "graceful", 3, "balanced");
    let leader = await_leader(&client, SERVICE, &ids(&nodes), Duration::from_secs(5)).await;
    let index = nodes.iter().position(|n| n.instance == leader).unwrap();

    nodes[index].signal("-TERM");
    let failover = await_new_leader_serving(&client, SERVICE, &leader).await;
    eprintln!("graceful handover: {failover:?}");
    assert!(failover < Duration::from_secs(5));
    assert!(nodes[index].wait_exit(Duration::from_secs(10)));
    assert!(
        nodes[index].lines().iter().any(|l| l.ends_with("Stopped")),
        "{:?}",
        nodes[index].lines()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_kill_and_restart_cycles_leave_exactly_one_leader() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let mut nodes = spawn_nodes(&server, "cycle-start", 3, "balanced");

    for cycle in 0..20 {
        let slot = cycle % nodes.len();
        nodes[slot].kill();
        nodes[slot] = Node::spawn(
            &server.url(),
            SERVICE,
            &format!("cycle-{cycle}"),
            "balanced",
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for node in &nodes {
        assert!(node.wait_for(|l| l == "READY", Duration::from_secs(10)));
    }

    let leader = await_leader(&client, SERVICE, &ids(&nodes), Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(leaders(&client, SERVICE, &ids(&nodes)).await, vec![leader]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_calls_through_a_failover_all_succeed_and_run_once() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let mut nodes = spawn_nodes(&server, "loop", 3, "balanced");
    let leader = await_leader(&client, SERVICE, &ids(&nodes), Duration::from_secs(5)).await;
    let index = nodes.iter().position(|n| n.instance == leader).unwrap();

    // The client calls in a loop; the leader is killed between two calls, so the
    // following calls run into the failover and must be carried through it by the SDK.
    let mut replies = Vec::new();
    let started = Instant::now();
    let mut killed_at = None;
    for call in 0.. {
        if call == 50 {
            nodes[index].crash(&server);
            killed_at = Some(Instant::now());
        }
        if killed_at.is_some_and(|t| t.elapsed() > Duration::from_millis(2500)) {
            break;
        }
        let call_id = format!("call-{call}");
        let reply: Value = client
            .call(SERVICE, "work", json!({"call_id": call_id}))
            .timeout(Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{call_id} failed: {e}"));
        assert_eq!(reply["call_id"], call_id.as_str());
        replies.push(reply);
    }
    eprintln!(
        "{} calls in {:?}, all succeeded",
        replies.len(),
        started.elapsed()
    );

    assert_each_call_ran_once(&nodes, &replies).await;
    let instances: HashSet<&str> = replies
        .iter()
        .map(|r| r["instance"].as_str().unwrap())
        .collect();
    assert_eq!(instances.len(), 2, "served before and after the failover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_right_after_a_leader_is_killed_all_succeed_and_run_once() {
    // The leader is killed right after it answered, and the next call goes out at once,
    // before the server has noticed the crash: that call's first attempt (or the retry a
    // standby points at the dead leader) is lost, and the SDK must carry it through the
    // failover anyway, three times over.
    let server = NatsServer::start();
    let client = connect(&server).await;
    let mut nodes = spawn_nodes(&server, "kill", 3, "aggressive");
    await_leader(&client, SERVICE, &ids(&nodes), Duration::from_secs(5)).await;

    let mut replies: Vec<Value> = Vec::new();
    let mut kills = 0;
    let mut slowest = Duration::ZERO;
    for call in 0..120 {
        if call > 0 && call % 30 == 0 {
            let leader = replies.last().unwrap()["instance"]
                .as_str()
                .unwrap()
                .to_owned();
            let index = nodes.iter().position(|n| n.instance == leader).unwrap();
            // The signal only: no waiting for the process to be gone.
            nodes[index].signal("-KILL");
            kills += 1;
            let fresh = Node::spawn(
                &server.url(),
                SERVICE,
                &format!("kill-r{kills}"),
                "aggressive",
            );
            nodes.push(fresh);
        }
        let call_id = format!("call-{call}");
        let started = Instant::now();
        let reply: Value = client
            .call(SERVICE, "work", json!({"call_id": call_id}))
            .timeout(Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{call_id} failed after {:?}: {e}", started.elapsed()));
        slowest = slowest.max(started.elapsed());
        assert_eq!(reply["call_id"], call_id.as_str());
        replies.push(reply);
    }
    eprintln!(
        "{} calls through {kills} kills, slowest {slowest:?}",
        replies.len()
    );
    assert_eq!(kills, 3);
    assert_each_call_ran_once(&nodes, &replies).await;
    let instances: HashSet<&str> = replies
        .iter()
        .map(|r| r["instance"].as_str().unwrap())
        .collect();
    assert_eq!(
        instances.len(),
        4,
        "a new leader after each kill: {instances:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_exclusive_call_is_waited_for_and_runs_once() {
    // A late exclusive call makes the client ask the leader whether it is alive; a
    // leader that is only slow must be left to finish, the call never sent again.
    let server = NatsServer::start();
    let client = connect(&server).await;
    let nodes = spawn_nodes(&server, "slow", 3, "balanced");
    await_leader(&client, SERVICE, &ids(&nodes), Duration::from_secs(5)).await;

    let mut replies = Vec::new();
    for call in 0..3 {
        let call_id = format!("slow-{call}");
        let started = Instant::now();
        let reply: Value = client
            .call(SERVICE, "slow", json!({"call_id": call_id, "ms": 1200}))
            .timeout(Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{call_id} failed: {e}"));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(1200),
            "{call_id} took {took:?}"
        );
        assert_eq!(reply["call_id"], call_id.as_str());
        replies.push(reply);
    }
    assert_each_call_ran_once(&nodes, &replies).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_running_when_the_leader_is_killed_never_run_twice() {
    // Callers keep slow exclusive calls in flight while leaders are killed. A call the
    // dead leader had confirmed may have run: it ends as Interrupted, never sent again.
    // Calls it had not taken yet go to the next leader. No call runs twice.
    let server = NatsServer::start();
    let client = connect(&server).await;
    let nodes = spawn_nodes(&server, "inflight", 3, "aggressive");
    await_leader(&client, SERVICE, &ids(&nodes), Duration::from_secs(5)).await;
    // Teach the client that `slow` is exclusive, and who leads.
    let _: Value = client
        .call(SERVICE, "slow", json!({"call_id": "warm", "ms": 0}))
        .await
        .unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|caller| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let call_id = format!("c{caller}-{n}");
                    n += 1;
                    let reply = client
                        .call::<_, Value>(SERVICE, "slow", json!({"call_id": call_id, "ms": 150}))
                        .timeout(Duration::from_secs(5))
                        .await;
                    outcomes.push((call_id, reply));
                }
                outcomes
            })
        })
        .collect();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let leader = await_leader(&client, SERVICE, &ids(&nodes), Duration::from_secs(5)).await;
        let index = nodes.iter().position(|n| n.instance == leader).unwrap();
        nodes[index].signal("-KILL");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    // Each caller's replies in the order it got them (tokens only grow within one).
    let mut per_caller: Vec<Vec<Value>> = Vec::new();
    let mut interrupted = Vec::new();
    for caller in callers {
        let mut replies = Vec::new();
        for (call_id, outcome) in caller.await.unwrap() {
            match outcome {
                Ok(reply) => replies.push(reply),
                Err(e) if e.kind() == ErrorKind::Interrupted => interrupted.push(call_id),
                Err(e) => panic!("{call_id} failed: {e} ({:?})", e.kind()),
            }
        }
        per_caller.push(replies);
    }
    let answered: usize = per_caller.iter().map(Vec::len).sum();
    eprintln!(
        "{answered} calls answered, {} interrupted by the kills",
        interrupted.len()
    );
    assert!(
        interrupted.len() <= 8,
        "at most the calls in flight at each kill"
    );
    for replies in &per_caller {
        assert_each_call_ran_once(&nodes, replies).await;
    }
    // Interrupted calls ran at most once, on the leader that died.
    let execs: Vec<String> = nodes.iter().flat_map(|n| n.facts("EXEC")).collect();
    for call_id in &interrupted {
        let runs = execs
            .iter()
            .filter(|e| e.split(' ').next() == Some(call_id.as_str()))
            .count();
        assert!(runs <= 1, "{call_id} ran {runs} times");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_crashing_as_a_call_starts_never_runs_it_twice() {
    // The leader dies the moment its handler starts (it aborts right after logging
    // EXEC), several times over. Its confirmation must have reached the server before
    // the handler ran, so the caller learns the call may have run (Interrupted) rather
    // than sending it again to the next leader.
    let server = NatsServer::start();
    let client = connect(&server).await;
    let mut nodes = spawn_nodes(&server, "abort", 3, "aggressive");
    for round in 0..3 {
        let leader = await_leader(&client, SERVICE, &ids(&nodes), Duration::from_secs(5)).await;
        // Teach the client that `slow` is exclusive, and who leads now.
        let reply: Value = client
            .call(
                SERVICE,
                "slow",
                json!({"call_id": format!("warm-{round}"), "ms": 0}),
            )
            .timeout(Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(reply["instance"], leader.as_str());

        let call_id = format!("doomed-{round}");
        let outcome = client
            .call::<_, Value>(
                SERVICE,
                "slow",
                json!({"call_id": call_id, "ms": 0, "crash_on": leader}),
            )
            .timeout(Duration::from_secs(5))
            .await;
        // Lines are read from the nodes' stdout by threads: give a late one time.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let runs: usize = nodes
            .iter()
            .map(|n| {
                n.facts("EXEC")
                    .iter()
                    .filter(|e| e.split(' ').next() == Some(call_id.as_str()))
                    .count()
            })
            .sum();
        assert_eq!(runs, 1, "{call_id} ran {runs} times; outcome {outcome:?}");
        let error = outcome.expect_err("the leader died running it");
        assert_eq!(error.kind(), ErrorKind::Interrupted, "{error}");
        nodes.push(Node::spawn(
            &server.url(),
            SERVICE,
            &format!("abort-r{round}"),
            "aggressive",
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_caught_in_a_freeze_runs_once_and_learns_its_term_ended() {
    // The leader freezes in the middle of a call, a standby takes over, the old leader
    // thaws and finishes the call: it ran once, its caller waited for it rather than
    // sending it again, and the handler could tell that its term had ended.
    let server = NatsServer::start();
    let client = connect(&server).await;
    let nodes = spawn_nodes(&server, "thaw", 3, "balanced");
    let leader = await_leader(&client, SERVICE, &ids(&nodes), Duration::from_secs(5)).await;
    let old = nodes.iter().find(|n| n.instance == leader).unwrap();
    let _: Value = client
        .call(SERVICE, "slow", json!({"call_id": "warm", "ms": 0}))
        .await
        .unwrap();

    let call = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .call::<_, Value>(SERVICE, "slow", json!({"call_id": "caught", "ms": 300}))
                .timeout(Duration::from_secs(8))
                .await
        }
    });
    assert!(old.wait_for(|l| l.starts_with("EXEC caught "), Duration::from_secs(5)));
    old.signal("-STOP");
    let frozen_at = Instant::now();
    let others: Vec<&str> = ids(&nodes).into_iter().filter(|id| *id != leader).collect();
    await_leader(&client, SERVICE, &others, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(frozen_at.elapsed())).await;
    old.signal("-CONT");

    let reply = call
        .await
        .unwrap()
        .expect("the caught call is answered after the thaw");
    assert_eq!(reply["instance"], leader.as_str());
    assert!(
        old.wait_for(|l| l == "STILL caught false", Duration::from_secs(5)),
        "{:?}",
        old.lines()
    );
    let runs: usize = nodes
        .iter()
        .map(|n| {
            n.facts("EXEC")
                .iter()
                .filter(|e| e.starts_with("caught "))
                .count()
        })
        .sum();
    assert_eq!(runs, 1, "the caught call ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_leader_is_replaced_and_finds_itself_demoted() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let nodes = spawn_nodes(&server, "frozen", 3, "balanced");
    let leader = await_leader(&client, SERVICE, &ids(&nodes), Duration::from_secs(5)).await;
    let old = nodes.iter().find(|n| n.instance == leader).unwrap();
    let old_token = probe(&client, SERVICE, &leader).await.unwrap();

    old.signal("-STOP");
    let frozen_at = Instant::now();
    let others: Vec<&str> = ids(&nodes).into_iter().filter(|id| *id != leader).collect();
    let new_leader = await_leader(&client, SERVICE, &others, Duration::from_secs(10)).await;
    eprintln!(
        "standby took over {:?} after the freeze",
        frozen_at.elapsed()
    );
    let new_token = probe(&client, SERVICE, &new_leader).await.unwrap();
    assert!(new_token > old_token);

    // Stay frozen past the lease (balanced: 2 s), then thaw.
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(frozen_at.elapsed())).await;
    let executed_before = old.facts("EXEC").len();
    old.signal("-CONT");

    // Asked directly at once, it refuses: its own clock says its term is over.
    for call in 0..20 {
        let reply = client
            .call::<_, Value>(
                SERVICE,
                "work",
                json!({"call_id": format!("thawed-{call}")}),
            )
            .instance(leader.as_str())
            .timeout(Duration::from_secs(2))
            .await;
        let error = reply.expect_err("a demoted leader must not execute");
        assert_eq!(error.kind(), ErrorKind::NotActive, "{error}");
    }
    assert_eq!(old.facts("EXEC").len(), executed_before);
    assert!(
        old.wait_for(|l| l.starts_with("LOST "), Duration::from_secs(5)),
        "{:?}",
        old.lines()
    );
    assert_eq!(
        leaders(&client, SERVICE, &ids(&nodes)).await,
        vec![new_leader]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_error_is_returned_after_one_attempt() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let nodes = spawn_nodes(&server, "failing", 3, "balanced");
    await_leader(&client, SERVICE, &ids(&nodes), Duration::from_secs(5)).await;

    for _ in 0..10 {
        let error = client
            .call::<_, Value>(SERVICE, "fail", json!({}))
            .timeout(Duration::from_secs(5))
            .await
            .expect_err("fails");
        assert_eq!(error.kind(), ErrorKind::Remote);
        assert_eq!(error.message(), "deliberate failure");
    }
    // Give a stray retry time to show up; there must be none.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let runs: usize = nodes.iter().map(|n| n.count("FAIL")).sum();
    assert_eq!(runs, 10, "each failing call ran exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_leader_hands_over_after_its_running_exclusive_calls() {
    use aegis_sdk::{FailoverPolicy, HandlerError, Leadership, RpcContext, Service};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, OnceLock};

    let server = NatsServer::start();
    let client = connect(&server).await;
    // While the slow call runs on the leader, it checks whether the standby leads too.
    let standby: Arc<OnceLock<Leadership>> = Arc::default();
    let overlap = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let build = |instance: &str| {
        let (standby, overlap, started) = (standby.clone(), overlap.clone(), started.clone());
        Service::builder(SERVICE)
            .instance_id(instance)
            .single_active("default", FailoverPolicy::balanced())
            .exclusive_rpc("slow", move |_ctx: RpcContext, p: Value| {
                let (standby, overlap, started) =
                    (standby.clone(), overlap.clone(), started.clone());
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    for _ in 0..p["ms"].as_u64().unwrap_or(300) {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        if standby.get().is_some_and(|l| l.is_leader()) {
                            overlap.store(true, Ordering::SeqCst);
                        }
                    }
                    Ok::<_, HandlerError>(json!({}))
                }
            })
            .build()
            .unwrap()
    };
    let a = build("in-process-a");
    a.start(&client).await.unwrap();
    while !a.leadership().unwrap().is_leader() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let b = build("in-process-b");
    standby.set(b.leadership().unwrap().clone()).unwrap();
    b.start(&client).await.unwrap();

    // A client that knows the method is exclusive (it watches the leader while it
    // waits), and a call longer than the standby's takeover delay: the stopping leader
    // must keep its lease until the call is done.
    let _: Value = client
        .call(SERVICE, "slow", json!({"ms": 0}))
        .await
        .unwrap();
    started.store(0, Ordering::SeqCst);
    let call = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .call::<_, Value>(SERVICE, "slow", json!({"ms": 1500}))
                .await
        }
    });
    while started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    a.stop().await.unwrap();
    call.await.unwrap().expect("the running call completes");
    assert_eq!(started.load(Ordering::SeqCst), 1, "the call ran once");
    assert!(
        !overlap.load(Ordering::SeqCst),
        "the standby took over while the call ran"
    );

    // And then it did take over, at once.
    let b_leadership = b.leadership().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b_leadership.is_leader() {
        assert!(Instant::now() < deadline, "standby did not take over");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_lease_store_keeps_its_contract() {
    use aegis_sdk::adapters::nats::NatsLeaseStore;
    use aegis_sdk::domain::election::{GroupName, LeaderRecord};
    use aegis_sdk::ports::{LeaseEvent, LeaseStore};
    use aegis_sdk::ServiceName;
    use futures::StreamExt;

    let server = NatsServer::start();
    let client = connect(&server).await;
    let service = ServiceName::new("lease-check").unwrap();
    let store = NatsLeaseStore::open(client.nats().unwrap(), &service, &GroupName::default())
        .await
        .unwrap();
    let ttl = Duration::from_secs(1);
    let a = LeaderRecord::new("a");
    let b = LeaderRecord::new("b");
    let mut watch = store.watch().await.unwrap();

    // Atomic create: one holder at a time.
    let first = store.try_acquire(&a, ttl).await.unwrap();
    let err = store.try_acquire(&b, ttl).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(store.current().await.unwrap().unwrap().revision, first);

    // Revision-checked renewal and release.
    let second = store.renew(&a, first, ttl).await.unwrap();
    assert!(second > first);
    let err = store.renew(&b, first, ttl).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevisionMismatch);
    let err = store.release(first).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevisionMismatch);
    store.release(second).await.unwrap();
    assert_eq!(store.current().await.unwrap(), None);

    // Created again over the delete marker, and still with a TTL: unrenewed, the
    // server removes it and the watch hears of it.
    let third = store.try_acquire(&b, ttl).await.unwrap();
    let written = Instant::now();
    let mut seen = Vec::new();
    let expired = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = watch.next().await {
            let event = event.unwrap();
            seen.push(event.clone());
            if matches!(event, LeaseEvent::Gone { revision } if revision > third) {
                return;
            }
        }
    })
    .await;
    assert!(expired.is_ok(), "no expiry marker; saw {seen:?}");
    assert!(written.elapsed() >= Duration::from_millis(900));
    assert_eq!(store.current().await.unwrap(), None);
    assert!(store.try_acquire(&a, ttl).await.unwrap() > third);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_created_without_ttl_gets_it() {
    use aegis_sdk::adapters::nats::NatsLeaseStore;
    use aegis_sdk::domain::election::{GroupName, LeaderRecord};
    use aegis_sdk::ports::LeaseStore;
    use aegis_sdk::ServiceName;

    // As a Python peer may have created it: a plain bucket.
    let server = NatsServer::start();
    let jetstream = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
    jetstream
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "election_py_made".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();

    let client = connect(&server).await;
    let service = ServiceName::new("py-made").unwrap();
    let store = NatsLeaseStore::open(client.nats().unwrap(), &service, &GroupName::default())
        .await
        .unwrap();
    store
        .try_acquire(&LeaderRecord::new("a"), Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(store.current().await.unwrap(), None, "the lease expired");
}
