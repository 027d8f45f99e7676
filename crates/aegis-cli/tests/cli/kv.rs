//! `aegis kv ...`: every subcommand on one bucket.

use std::time::Duration;

use aegis_test_support::NatsServer;
use serde_json::{json, Value};

use crate::support::{run, Spawned};

#[test]
fn kv_reads_and_writes_with_revisions() {
    let server = NatsServer::start();
    let url = server.url();

    // Reads never create a bucket.
    assert!(run(&url, &["kv", "get", "settings", "theme"])
        .error(1)
        .contains("no KV bucket settings"));

    let first = run(
        &url,
        &[
            "kv",
            "put",
            "settings",
            "theme",
            r#"{"dark": true}"#,
            "--history",
            "5",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(first["revision"], 1);
    let second = run(
        &url,
        &["kv", "put", "settings", "theme", r#"{"dark": false}"#],
    )
    .ok();
    assert_eq!(second.stdout.trim(), "theme revision 2");

    assert_eq!(
        run(&url, &["kv", "get", "settings", "theme"])
            .ok()
            .stdout
            .trim(),
        r#"{"dark": false}"#
    );
    let entry = run(&url, &["kv", "get", "settings", "theme", "--json"])
        .ok()
        .json();
    assert_eq!(entry["value"], json!({"dark": false}));
    assert_eq!(entry["revision"], 2);

    // create: only when absent; update: only at the revision given.
    assert!(run(&url, &["kv", "create", "settings", "theme", "x"])
        .error(1)
        .contains("already_exists"));
    let created = run(&url, &["kv", "create", "settings", "lang", "en", "--json"])
        .ok()
        .json();
    assert_eq!(created["revision"], 3);
    assert!(run(
        &url,
        &[
            "kv",
            "update",
            "settings",
            "theme",
            "light",
            "--revision",
            "1"
        ]
    )
    .error(1)
    .contains("revision_mismatch"));
    let updated = run(
        &url,
        &[
            "kv",
            "update",
            "settings",
            "theme",
            "light",
            "--revision",
            "2",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(updated["revision"], 4);
    // A plain string is stored as it is, and shown as a string in JSON.
    assert_eq!(
        run(&url, &["kv", "get", "settings", "theme", "--json"])
            .ok()
            .json()["value"],
        "light"
    );

    assert_eq!(
        run(&url, &["kv", "ls", "settings", "--json"]).ok().json(),
        json!(["lang", "theme"])
    );
    assert_eq!(
        run(&url, &["kv", "ls", "settings", "th"]).ok().stdout,
        "theme\n"
    );

    let history = run(&url, &["kv", "history", "settings", "theme", "--json"])
        .ok()
        .json();
    let revisions: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revisions, [4, 2, 1]);
    assert_eq!(history[2]["value"], json!({"dark": true}));
    let table = run(&url, &["kv", "history", "settings", "theme"])
        .ok()
        .stdout;
    assert!(table.starts_with("REVISION  OPERATION"), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");

    // del: with a stale revision refused, then done; the key is gone for get.
    run(&url, &["kv", "del", "settings", "lang", "--revision", "1"]).error(1);
    assert_eq!(
        run(&url, &["kv", "del", "settings", "lang"])
            .ok()
            .stdout
            .trim(),
        "deleted lang"
    );
    assert!(run(&url, &["kv", "get", "settings", "lang"])
        .error(1)
        .contains("no key lang"));
    run(&url, &["kv", "del", "settings", "theme", "--purge"]).ok();
    let history = run(&url, &["kv", "history", "settings", "theme", "--json"])
        .ok()
        .json();
    assert_eq!(
        history.as_array().unwrap().len(),
        1,
        "a purge leaves only its marker"
    );
    assert_eq!(history[0]["operation"], "purge");
    run(&url, &["kv", "history", "settings", "never-written"]).error(1);
    assert_eq!(
        run(&url, &["kv", "ls", "settings", "--json"]).ok().json(),
        json!([])
    );

    // Invalid keys, buckets and TTLs are usage errors.
    run(&url, &["kv", "put", "settings", "bad key", "v"]).error(2);
    run(&url, &["kv", "put", "bad.bucket", "k", "v"]).error(2);
    run(&url, &["kv", "put", "settings", "k", "v", "--ttl", "-3"]).error(2);
    run(
        &url,
        &["kv", "put", "settings", "k", "v", "--history", "65"],
    )
    .error(2);
    run(&url, &["kv", "frobnicate", "settings"]).error(2);
}

#[test]
fn kv_watch_prints_current_values_then_changes() {
    let server = NatsServer::start();
    let url = server.url();
    run(&url, &["kv", "put", "flags", "alpha", "1"]).ok();

    let watch = Spawned::start(
        &url,
        &[
            "kv", "watch", "flags", "--json", "--count", "3", "--for", "30",
        ],
    );
    let current: Value =
        serde_json::from_str(&watch.next_line(Duration::from_secs(10)).unwrap()).unwrap();
    assert_eq!(current["key"], "alpha");
    assert_eq!(current["operation"], "put");
    assert_eq!(current["value"], 1);

    run(&url, &["kv", "put", "flags", "beta", "2"]).ok();
    run(&url, &["kv", "del", "flags", "alpha"]).ok();
    let (code, rest) = watch.finish(Duration::from_secs(20));
    assert_eq!(code, Some(0));
    let changes: Vec<Value> = rest
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(changes.len(), 2, "{rest:?}");
    assert_eq!(
        (changes[0]["key"].as_str(), changes[0]["operation"].as_str()),
        (Some("beta"), Some("put"))
    );
    assert_eq!(
        (changes[1]["key"].as_str(), changes[1]["operation"].as_str()),
        (Some("alpha"), Some("delete"))
    );

    // --exact watches one key only; --new-only skips the current value.
    let watch = Spawned::start(
        &url,
        &[
            "kv",
            "watch",
            "flags",
            "beta",
            "--exact",
            "--new-only",
            "--json",
            "--count",
            "1",
            "--for",
            "30",
        ],
    );
    watch.wait_stderr("watching bucket flags", Duration::from_secs(10));
    run(&url, &["kv", "put", "flags", "betamax", "no"]).ok();
    run(&url, &["kv", "put", "flags", "beta", "3"]).ok();
    let (code, rest) = watch.finish(Duration::from_secs(20));
    assert_eq!(code, Some(0));
    let change: Value = serde_json::from_str(&rest[0]).unwrap();
    assert_eq!(
        (change["key"].as_str(), change["value"].as_u64()),
        (Some("beta"), Some(3))
    );
}

#[test]
fn zero_limits_and_counts_are_usage_errors() {
    let server = NatsServer::start();
    let url = server.url();
    run(&url, &["kv", "put", "b", "k", "v"]).ok();
    // Not a false "no key": the key is there, 0 revisions is what is wrong.
    let failed = run(&url, &["kv", "history", "b", "k", "--limit", "0"]);
    let line = failed.error(2);
    assert!(line.contains("--limit"), "{failed:?}");
    assert!(!line.contains("no key"), "{failed:?}");
    run(&url, &["kv", "history", "b", "k", "--limit", "1"]).ok();
    for args in [
        &["kv", "watch", "b", "--count", "0"][..],
        &["subscribe", "order.*", "--count", "0"],
        &["services", "--watch", "--count", "0"],
        &["demo", "--calls", "0"],
    ] {
        let failed = run(&url, args);
        assert!(failed.error(2).contains("0"), "{args:?}: {failed:?}");
        assert!(failed.elapsed < Duration::from_secs(5), "{args:?}");
    }
}
