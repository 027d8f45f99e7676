//! Errors a user can cause: one line on stderr, exit 1 (failure) or 2 (usage), fast.

use std::time::Duration;

use aegis_test_support::NatsServer;

use crate::support::{run, run_plain};

const SUBCOMMANDS: [&str; 12] = [
    "server",
    "call",
    "services",
    "publish",
    "subscribe",
    "command",
    "kv",
    "leader",
    "bench",
    "demo",
    "command send",
    "kv watch",
];

#[test]
fn every_subcommand_has_help_with_the_connection_options() {
    for subcommand in SUBCOMMANDS {
        let mut args: Vec<&str> = subcommand.split(' ').collect();
        args.push("--help");
        let help = run_plain(&args).ok().stdout;
        assert!(help.contains("Usage: aegis"), "{subcommand}: {help}");
        for option in [
            "--server",
            "--json",
            "--user",
            "--password",
            "--token",
            "--creds",
            "--nkey",
        ] {
            assert!(
                help.contains(option),
                "{subcommand} --help lacks {option}: {help}"
            );
        }
    }
    let top = run_plain(&["--help"]).ok().stdout;
    for subcommand in [
        "services",
        "publish",
        "subscribe",
        "command",
        "kv",
        "leader",
        "bench",
    ] {
        assert!(top.contains(subcommand), "{top}");
    }
}

#[test]
fn usage_errors_are_one_line_and_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["call"],
        &["call", "svc"],
        &["kv", "get", "bucket"],
        &["services", "--interval", "soon"],
        &["--no-such-flag", "services"],
    ] {
        let failed = run_plain(args);
        assert!(
            failed.error(2).contains("see --help"),
            "{args:?}: {failed:?}"
        );
    }
}

#[test]
fn with_json_every_error_is_one_json_object() {
    let server = NatsServer::start();
    let url = server.url();
    run(&url, &["kv", "put", "b", "k", "v"]).ok();
    let unreachable = format!("nats://127.0.0.1:{}", aegis_test_support::free_port());
    for (server, args, code, kind) in [
        (&url, &["call", "nobody", "ping"][..], 1, "no_responders"),
        (&url, &["call", "svc", "m", "{not json"], 2, "usage"),
        (&url, &["call", "bad.name", "m"], 2, "invalid_name"),
        (&url, &["call", "svc", "m", "[1, 2]"], 2, "usage"),
        (&url, &["kv", "get", "b", "missing"], 1, "not_found"),
        (&url, &["kv", "get", "nobucket", "k"], 1, "not_found"),
        (&url, &["services", "nobody"], 1, "not_found"),
        (&url, &["publish", "nodot", "{}"], 2, "usage"),
        (&url, &["subscribe", "a..b"], 2, "invalid_name"),
        (&url, &["command", "status", "no-such-id"], 1, "not_found"),
        (&url, &["command", "send", "svc", "job"], 1, "no_responders"),
        (&url, &["leader", "nobody"], 1, "not_found"),
        (&unreachable, &["services"], 1, "connection"),
        (&url, &["--no-such-flag", "services"], 2, "usage"),
        (&url, &["kv", "history", "b"], 2, "usage"),
    ] {
        let mut all = args.to_vec();
        all.push("--json");
        let failed = run(server, &all);
        let error = failed.json_error(code);
        assert_eq!(error["error"], kind, "{args:?}: {failed:?}");
        assert!(!failed.stderr.starts_with("error"), "{args:?}: {failed:?}");
        assert!(failed.stdout.is_empty(), "{args:?}: {failed:?}");
    }
    // The server subcommand too, when its port is taken.
    let port = server.port().to_string();
    let data = std::env::temp_dir().join(format!("aegis-json-{}", std::process::id()));
    let failed = run_plain(&[
        "server",
        "--json",
        "--port",
        &port,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let error = failed.json_error(1);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("address already in use"),
        "{failed:?}"
    );
    let _ = std::fs::remove_dir_all(&data);

    // Without --json: the same failures as one text line.
    let failed = run(&url, &["call", "nobody", "ping"]);
    assert!(
        failed.error(1).starts_with("error: no_responders: "),
        "{failed:?}"
    );
}

#[test]
fn an_unreachable_server_fails_fast_with_one_line() {
    let url = format!("nats://127.0.0.1:{}", aegis_test_support::free_port());
    for args in [
        &["services"][..],
        &["publish", "order.created", "{}"],
        &["subscribe", "order.*"],
        &["command", "status", "abc"],
        &["kv", "get", "b", "k"],
        &["leader", "ledger"],
        &["call", "svc", "ping"],
    ] {
        let failed = run(&url, args);
        assert!(
            failed.error(1).contains("connection"),
            "{args:?}: {failed:?}"
        );
        assert!(
            failed.elapsed < Duration::from_secs(5),
            "{args:?} took {:?}",
            failed.elapsed
        );
    }
}

#[test]
fn credentials_reach_the_server() {
    let server = NatsServer::builder()
        .config_extra("authorization { users = [ { user: alice, password: wonderland } ] }")
        .start();
    let url = server.url();
    run(
        &url,
        &[
            "--user",
            "alice",
            "--password",
            "wonderland",
            "kv",
            "put",
            "b",
            "k",
            "v",
        ],
    )
    .ok();
    let denied = run(
        &url,
        &[
            "--user",
            "alice",
            "--password",
            "nope",
            "kv",
            "get",
            "b",
            "k",
        ],
    );
    assert!(denied.error(1).contains("connection"), "{denied:?}");
    run(&url, &["kv", "get", "b", "k"]).error(1);
    // Both sides of a benchmark use them, the raw async-nats one included.
    run(
        &url,
        &[
            "--user",
            "alice",
            "--password",
            "wonderland",
            "bench",
            "rpc",
            "--count",
            "5",
            "--load",
            "10",
        ],
    )
    .ok();
    let half = run(&url, &["--user", "alice", "kv", "get", "b", "k"]);
    assert!(half.error(2).contains("--password"), "{half:?}");

    let server = NatsServer::builder()
        .config_extra("authorization { token: \"s3cret-token\" }")
        .start();
    let url = server.url();
    assert_eq!(
        run(
            &url,
            &["--token", "s3cret-token", "kv", "put", "b", "k", "v"]
        )
        .ok()
        .stdout
        .trim(),
        "k revision 1"
    );
    let denied = run(&url, &["--token", "wrong", "kv", "get", "b", "k"]);
    // Neither the right token nor the wrong one shows up in the message.
    assert!(
        !denied.error(1).contains("s3cret") && !denied.stderr.contains("wrong"),
        "{denied:?}"
    );
}

#[test]
fn malformed_connection_arguments_are_usage_errors() {
    for server in ["foo://bar", "::::", "nats://127.0.0.1:99999", "", " , "] {
        let failed = run(server, &["kv", "get", "b", "k"]);
        let line = failed.error(2);
        assert!(line.contains("server"), "{server:?}: {failed:?}");
        assert!(
            failed.elapsed < Duration::from_secs(2),
            "{server:?}: {failed:?}"
        );
    }
    let url = "nats://127.0.0.1:4222";
    let failed = run(url, &["--nkey", "SUnot-a-real-seed", "kv", "get", "b", "k"]);
    let line = failed.error(2);
    assert!(line.contains("NKey seed is invalid"), "{failed:?}");
    assert!(!line.contains("not-a-real-seed"), "{failed:?}");
    let failed = run(
        url,
        &[
            "--user",
            "alice",
            "--password",
            "pw",
            "--token",
            "t",
            "kv",
            "get",
            "b",
            "k",
        ],
    );
    let line = failed.error(2);
    assert!(line.contains("--user/--password and --token"), "{failed:?}");
    // A credential in a malformed URL is not shown either.
    let failed = run("foo://alice:s3cret@bar", &["kv", "get", "b", "k"]);
    assert!(!failed.error(2).contains("s3cret"), "{failed:?}");
}

#[test]
fn credentials_in_the_server_url_are_used() {
    let server = NatsServer::builder()
        .config_extra("authorization { users = [ { user: alice, password: s3cret } ] }")
        .start();
    let url = format!("nats://alice:s3cret@127.0.0.1:{}", server.port());
    run(&url, &["kv", "put", "b", "k", "v"]).ok();
    assert_eq!(run(&url, &["kv", "get", "b", "k"]).ok().stdout.trim(), "v");
    let wrong = format!("nats://alice:nope@127.0.0.1:{}", server.port());
    let denied = run(&wrong, &["kv", "get", "b", "k"]);
    let line = denied.error(1);
    assert!(line.contains("connection"), "{denied:?}");
    assert!(!line.contains("nope"), "{denied:?}");
}

#[test]
fn an_nkey_seed_authenticates() {
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let server = NatsServer::builder()
        .config_extra(&format!(
            "authorization {{ users = [ {{ nkey: {} }} ] }}",
            user.public_key()
        ))
        .start();
    let url = server.url();
    run(&url, &["--nkey", &seed, "kv", "put", "b", "k", "v"]).ok();
    let from_env = crate::support::aegis()
        .args(["--server", &url, "kv", "get", "b", "k"])
        .env("NATS_NKEY_SEED", &seed)
        .output()
        .unwrap();
    assert!(from_env.status.success(), "{from_env:?}");
    assert_eq!(String::from_utf8_lossy(&from_env.stdout).trim(), "v");
    let denied = run(&url, &["kv", "get", "b", "k"]);
    assert!(denied.error(1).contains("connection"), "{denied:?}");
    assert!(!denied.stderr.contains(&seed));
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::BufRead;

    let server = NatsServer::start();
    // `aegis services --watch | head -1`: the reader leaves after one line.
    let mut child = crate::support::aegis()
        .args([
            "--server",
            &server.url(),
            "services",
            "--watch",
            "--json",
            "--interval",
            "0.05",
            "--for",
            "20",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first.trim(), "[]");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(141));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "",
        "no panic trace"
    );
}

#[test]
fn a_server_without_jetstream_says_so_in_one_line() {
    let server = NatsServer::builder().jetstream(false).start();
    let url = server.url();
    for args in [
        &["subscribe", "order.*", "--for", "5"][..],
        &["publish", "order.created", "{}"],
        &["kv", "put", "b", "k", "v"],
        &["kv", "get", "b", "k"],
        &["kv", "ls", "b"],
        &["command", "send", "reports", "generate"],
        &["command", "status", "abc"],
        &["command", "cancel", "abc"],
        &["services"],
        &["services", "--watch", "--count", "1"],
        &["leader", "ledger"],
        &["bench", "events", "--count", "1", "--load", "1"],
        &["demo", "--calls", "1"],
    ] {
        let failed = run(&url, args);
        let line = failed.error(1);
        assert!(
            line.contains("JetStream is not enabled"),
            "{args:?}: {line}"
        );
        assert!(
            failed.elapsed < Duration::from_secs(5),
            "{args:?} took {:?}",
            failed.elapsed
        );
        let mut json = args.to_vec();
        json.push("--json");
        let failed = run(&url, &json);
        assert_eq!(failed.json_error(1)["error"], "jetstream_not_enabled");
    }
    // RPC needs no JetStream.
    run(&url, &["call", "nobody", "ping"]).error(1);
    run(&url, &["bench", "rpc", "--count", "5", "--load", "10"]).ok();
}

#[test]
fn ctrl_c_ends_streaming_subcommands_cleanly() {
    let server = NatsServer::start();
    let url = server.url();
    run(&url, &["kv", "put", "b", "k", "v"]).ok();
    for (args, ready) in [
        (&["subscribe", "order.*"][..], "subscribed to"),
        (&["kv", "watch", "b"], "watching bucket b"),
    ] {
        let streaming = crate::support::Spawned::start(&url, args);
        streaming.wait_stderr(ready, Duration::from_secs(10));
        streaming.interrupt();
        let (code, _) = streaming.finish(Duration::from_secs(10));
        assert_eq!(code, Some(0), "{args:?}");
    }
    let watching = crate::support::Spawned::start(&url, &["services", "--watch", "--json"]);
    assert!(watching.next_line(Duration::from_secs(10)).is_some());
    watching.interrupt();
    let (code, _) = watching.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0));
}

#[test]
fn very_long_names_are_refused_at_once_without_being_echoed() {
    let server = NatsServer::start();
    let url = server.url();
    run(&url, &["kv", "put", "b", "k", "v"]).ok();
    let key = "k".repeat(100_000);
    let pattern = vec!["order"; 1_000].join(".");
    let token = "t".repeat(5_000);
    for args in [
        &["kv", "get", "b", key.as_str()][..],
        &["kv", "put", "b", key.as_str(), "v"],
        &["kv", "history", "b", key.as_str()],
        &["kv", "get", key.as_str(), "k"],
        &["subscribe", pattern.as_str()],
        &["publish", &format!("order.{token}"), "{}"],
        &["call", "svc", token.as_str()],
        &["call", "svc", "m", "--instance", token.as_str()],
        &["command", "status", token.as_str()],
    ] {
        let failed = run(&url, args);
        let line = failed.error(2);
        // Cut short, with the length it had.
        assert!(line.contains("…\" (") && line.contains(" bytes)"), "{line}");
        assert!(line.len() < 300, "{} bytes: {line}", line.len());
        assert!(
            failed.elapsed < Duration::from_secs(2),
            "{:?}",
            failed.elapsed
        );
    }
}
