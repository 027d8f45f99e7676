//! The KV store on a real nats-server started by each test.

use std::time::{Duration, Instant};

use aegis_sdk::application::kv::Kv;
use aegis_sdk::domain::kv_key::{decode_key, encode_key};
use aegis_sdk::ports::kv::{
    BucketConfig, KvChange, KvOperation, KvWatch, StorageKind, WatchStart, WatchTarget,
};
use aegis_sdk::{Client, ConnectOptions, ErrorKind};
use aegis_test_support::NatsServer;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

async fn connect(server: &NatsServer) -> Client {
    Client::connect(&ConnectOptions::new(server.url()))
        .await
        .expect("connect")
}

async fn bucket(client: &Client, name: &str) -> Kv {
    Kv::open(client, BucketConfig::new(name).history(10))
        .await
        .expect("open bucket")
}

async fn next(watch: &mut KvWatch) -> KvChange {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("a change within 10 s")
        .expect("watch still open")
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct User {
    name: String,
    age: u32,
}

fn user(name: &str, age: u32) -> User {
    User {
        name: name.to_owned(),
        age,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_create_update_delete_purge() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let kv = bucket(&client, "ops").await;

    assert!(kv.get::<User>("missing").await.unwrap().is_none());

    let r1 = kv.put("alice", &user("alice", 30)).await.unwrap();
    let got = kv.get::<User>("alice").await.unwrap().unwrap();
    assert_eq!(got.value, user("alice", 30));
    assert_eq!(got.revision, r1);

    // create: refused while the key is live, allowed for a new key.
    let err = kv.create("alice", &user("x", 1), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    let rb = kv.create("bob", &user("bob", 40), None).await.unwrap();
    assert!(rb > r1);

    // update: a compare-and-set on the revision.
    let r2 = kv.update("alice", &user("alice", 31), r1).await.unwrap();
    let err = kv
        .update("alice", &user("alice", 99), r1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevisionMismatch);
    assert_eq!(
        kv.get::<User>("alice").await.unwrap().unwrap().value.age,
        31
    );
    let err = kv.update("nobody", &user("n", 1), 5).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevisionMismatch);

    // delete with an expected revision.
    let err = kv.delete_if("alice", r1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevisionMismatch);
    assert!(kv.get::<User>("alice").await.unwrap().is_some());
    kv.delete_if("alice", r2).await.unwrap();
    assert!(kv.get::<User>("alice").await.unwrap().is_none());

    // create works again after a delete.
    kv.create("alice", &user("alice", 1), None).await.unwrap();
    assert_eq!(kv.get::<User>("alice").await.unwrap().unwrap().value.age, 1);

    // purge with and without an expected revision; create works after a purge.
    let store = kv.store();
    let err = store.purge("bob", Some(rb + 1000)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevisionMismatch);
    store.purge("bob", Some(rb)).await.unwrap();
    assert!(kv.get::<User>("bob").await.unwrap().is_none());
    assert!(
        store.history("bob", 10).await.unwrap().len() == 1,
        "purge leaves one marker"
    );
    kv.create("bob", &user("bob", 2), None).await.unwrap();
    kv.purge("bob").await.unwrap();
    assert!(kv.get::<User>("bob").await.unwrap().is_none());

    // Plain delete of a key that never existed is fine.
    kv.delete("never").await.unwrap();
    // A value that is not the asked type is a decode error.
    kv.put("raw", &"text").await.unwrap();
    assert_eq!(
        kv.get::<User>("raw").await.unwrap_err().kind(),
        ErrorKind::Decode
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_history_bulk_and_status() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let kv = bucket(&client, "bulk").await;
    let store = kv.store();

    let revisions = store
        .put_many(
            vec![
                ("orders.1".into(), Bytes::from_static(b"1")),
                ("orders.2".into(), Bytes::from_static(b"2")),
                ("orders.3".into(), Bytes::from_static(b"3")),
                ("users.a".into(), Bytes::from_static(b"a")),
                ("user-b".into(), Bytes::from_static(b"b")),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(revisions.len(), 5);

    assert_eq!(
        kv.keys("orders.").await.unwrap(),
        vec!["orders.1", "orders.2", "orders.3"]
    );
    assert_eq!(kv.keys("user").await.unwrap(), vec!["user-b", "users.a"]);
    assert_eq!(kv.keys("").await.unwrap().len(), 5);
    assert!(kv.keys("nothing.").await.unwrap().is_empty());

    let keys: Vec<String> = vec!["orders.2".into(), "missing".into(), "users.a".into()];
    let got = store.get_many(&keys).await.unwrap();
    assert_eq!(got[0].as_ref().unwrap().value, Bytes::from_static(b"2"));
    assert!(got[1].is_none());
    assert_eq!(got[2].as_ref().unwrap().key, "users.a");

    store
        .delete_many(&["orders.1".to_owned(), "orders.3".to_owned()])
        .await
        .unwrap();
    assert_eq!(kv.keys("orders.").await.unwrap(), vec!["orders.2"]);
    let entries = store.entries("orders.").await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].value, Bytes::from_static(b"2"));

    // History: newest first, limited, deletes included.
    for age in 1..=4 {
        kv.put("counter", &age).await.unwrap();
    }
    kv.delete("counter").await.unwrap();
    let history = store.history("counter", 3).await.unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].0, KvOperation::Delete);
    assert_eq!(history[1].1.value, Bytes::from_static(b"4"));
    assert_eq!(history[2].1.value, Bytes::from_static(b"3"));
    assert!(history[0].1.revision > history[1].1.revision);
    let typed = kv.history::<u32>("counter", 10).await.unwrap();
    assert_eq!(
        typed.iter().map(|v| v.value).collect::<Vec<_>>(),
        vec![4, 3, 2, 1]
    );
    assert!(store.history("never", 5).await.unwrap().is_empty());

    let status = kv.status().await.unwrap();
    assert_eq!(status.bucket, "bulk");
    assert_eq!(status.history, 10);
    assert!(status.ttl_enabled);
    assert!(status.values >= 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_configuration_and_existing_buckets() {
    let server = NatsServer::start();
    let client = connect(&server).await;

    let config = BucketConfig::new("configured")
        .history(5)
        .max_value_size(64)
        .storage(StorageKind::Memory)
        .expiry_markers(None);
    let kv = Kv::open(&client, config).await.unwrap();
    let status = kv.status().await.unwrap();
    assert_eq!(status.history, 5);
    assert_eq!(status.max_value_size, 64);
    assert_eq!(status.storage, StorageKind::Memory);
    assert!(!status.ttl_enabled);
    assert!(kv
        .store()
        .put("big", Bytes::from(vec![b'x'; 100]), None)
        .await
        .is_err());
    let err = kv
        .put_with_ttl("k", &1, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);

    // Opening again with another configuration uses the bucket as it is.
    let again = Kv::open(&client, BucketConfig::new("configured").history(1))
        .await
        .unwrap();
    assert_eq!(again.status().await.unwrap().history, 5);

    for bad in ["a.b", "", "sp ace"] {
        let err = Kv::open(&client, BucketConfig::new(bad)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?}");
    }
    let err = Kv::open(&client, BucketConfig::new("h").history(0))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_keys_are_typed_errors_and_encoded_keys_work() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let kv = bucket(&client, "keys").await;
    let store = kv.store();

    for bad in ["user:123", "", ".a", "a.", "a..b", "a b", "a*", "a>", "é"] {
        let kinds = [
            kv.put(bad, &1).await.unwrap_err().kind(),
            store.get(bad).await.unwrap_err().kind(),
            kv.create(bad, &1, None).await.unwrap_err().kind(),
            kv.update(bad, &1, 1).await.unwrap_err().kind(),
            kv.delete(bad).await.unwrap_err().kind(),
            kv.purge(bad).await.unwrap_err().kind(),
            store.history(bad, 1).await.unwrap_err().kind(),
            store
                .watch(WatchTarget::Key(bad.to_owned()), WatchStart::NewOnly)
                .await
                .unwrap_err()
                .kind(),
        ];
        assert!(
            kinds.iter().all(|k| *k == ErrorKind::InvalidName),
            "{bad:?}: {kinds:?}"
        );
    }
    assert_eq!(
        kv.keys("a b").await.unwrap_err().kind(),
        ErrorKind::InvalidName
    );

    let key = encode_key("user:123").unwrap();
    kv.put(&key, &user("u", 1)).await.unwrap();
    let keys = kv.keys("").await.unwrap();
    assert_eq!(keys, vec![key.clone()]);
    assert_eq!(decode_key(&keys[0]).unwrap(), "user:123");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_expiry_seen_by_get_keys_watcher_and_create() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let kv = bucket(&client, "leases").await;

    let err = kv
        .put_with_ttl("short", &1, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);

    let mut watch = kv
        .store()
        .watch(WatchTarget::Prefix("lease.".into()), WatchStart::NewOnly)
        .await
        .unwrap();
    let written = kv
        .put_with_ttl("lease.a", &"holder-1", Duration::from_secs(1))
        .await
        .unwrap();
    kv.put("lease.keep", &"forever").await.unwrap();

    let put = next(&mut watch).await;
    assert_eq!(
        (put.key.as_str(), put.operation),
        ("lease.a", KvOperation::Put)
    );
    assert_eq!(put.revision, written);
    assert_eq!(next(&mut watch).await.key, "lease.keep");

    // The server removes the key after its TTL; the watcher hears of it.
    let expired = next(&mut watch).await;
    assert_eq!(expired.key, "lease.a");
    assert_eq!(expired.operation, KvOperation::Expired);
    assert!(expired.revision > written);

    assert!(kv.get::<String>("lease.a").await.unwrap().is_none());
    assert_eq!(kv.keys("lease.").await.unwrap(), vec!["lease.keep"]);

    // create works after expiry, and keeps its own TTL.
    let created = kv
        .create("lease.a", &"holder-2", Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(
        kv.get::<String>("lease.a").await.unwrap().unwrap().value,
        "holder-2"
    );
    let err = kv.create("lease.a", &"holder-3", None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    let change = next(&mut watch).await;
    assert_eq!(
        (change.revision, change.operation),
        (created, KvOperation::Put)
    );
    let expired = next(&mut watch).await;
    assert_eq!(
        (expired.key.as_str(), expired.operation),
        ("lease.a", KvOperation::Expired)
    );
    assert!(kv.get::<String>("lease.a").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_current_values_first_then_changes() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let kv = bucket(&client, "current").await;
    kv.put("cfg.a", &1).await.unwrap();
    kv.put("cfg.a", &2).await.unwrap();
    kv.put("cfg.b", &3).await.unwrap();

    let mut watch = kv.watch_prefix("cfg.").await.unwrap();
    assert!(!watch.current_at_start());
    let first = next(&mut watch).await;
    let second = next(&mut watch).await;
    assert_eq!(
        (first.key.as_str(), first.value.as_ref()),
        ("cfg.a", &b"2"[..])
    );
    assert_eq!((second.key.as_str(), second.pending), ("cfg.b", 0));

    kv.put("cfg.c", &4).await.unwrap();
    assert_eq!(next(&mut watch).await.key, "cfg.c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_on_empty_bucket_stays_open_and_receives_a_later_put() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let kv = bucket(&client, "empty").await;

    let mut watch = kv.watch_prefix("").await.unwrap();
    assert!(watch.current_at_start());
    let quiet = tokio::time::timeout(Duration::from_millis(500), watch.next()).await;
    assert!(quiet.is_err(), "nothing arrives and the watch does not end");

    let revision = kv.put("late", &"value").await.unwrap();
    let change = next(&mut watch).await;
    assert_eq!((change.key.as_str(), change.revision), ("late", revision));
    assert_eq!(Kv::decode::<String>(&change.value).unwrap(), "value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_server_restart_while_nobody_reads() {
    let mut server = NatsServer::start();
    let client = connect(&server).await;
    let kv = bucket(&client, "resume").await;

    let mut watch = kv
        .store()
        .watch(WatchTarget::Prefix("k.".into()), WatchStart::NewOnly)
        .await
        .unwrap();
    let first = kv.put("k.0", &0).await.unwrap();
    assert_eq!(next(&mut watch).await.revision, first);

    // More changes than the watch buffers, none of them read, then a restart.
    let mut written = Vec::new();
    for i in 1..=400 {
        written.push(kv.put(&format!("k.{i}"), &i).await.unwrap());
    }
    server.restart();

    // Writes after the restart, once the client is back.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 401;
    while i <= 410 {
        match kv.put(&format!("k.{i}"), &i).await {
            Ok(revision) => {
                written.push(revision);
                i += 1;
            }
            Err(error) => {
                assert!(Instant::now() < deadline, "no write after restart: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    // Every change exactly once, in order.
    let mut seen = Vec::new();
    while seen.len() < written.len() {
        let change = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .unwrap_or_else(|_| panic!("stalled after {} of {}", seen.len(), written.len()))
            .unwrap();
        assert_eq!(change.key, format!("k.{}", seen.len() + 1));
        seen.push(change.revision);
    }
    assert_eq!(seen, written);
    let extra = tokio::time::timeout(Duration::from_millis(500), watch.next()).await;
    assert!(extra.is_err(), "nothing repeated: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_json_by_default_and_messagepack_when_asked() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let kv = bucket(&client, "encodings").await;

    kv.put("json", &user("j", 1)).await.unwrap();
    let raw = kv.store().get("json").await.unwrap().unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&raw.value).unwrap(),
        serde_json::json!({"name": "j", "age": 1})
    );

    let packed = kv.with_encoding(aegis_sdk::Encoding::MessagePack);
    packed.put("packed", &user("p", 2)).await.unwrap();
    let raw = kv.store().get("packed").await.unwrap().unwrap();
    assert_eq!(raw.value[0] & 0xF0, 0x80, "a MessagePack map");
    assert_eq!(
        packed.get::<User>("packed").await.unwrap().unwrap().value,
        user("p", 2)
    );
    assert_eq!(
        kv.get::<User>("packed").await.unwrap_err().kind(),
        ErrorKind::Decode
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_more_keys_than_one_batched_get_returns_them_all() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let kv = bucket(&client, "large").await;

    // The server answers a batched get of more than 1024 keys with 413; the listing
    // then reads an ordered consumer instead.
    let entries: Vec<(String, Bytes)> = (0..2000)
        .map(|i| (format!("k.{i:04}"), Bytes::from_static(b"x")))
        .collect();
    for chunk in entries.chunks(500) {
        kv.store().put_many(chunk.to_vec(), None).await.unwrap();
    }
    kv.delete("k.0007").await.unwrap();

    let keys = kv.keys("k.").await.unwrap();
    assert_eq!(keys.len(), 1999);
    assert_eq!(keys[0], "k.0000");
    assert!(!keys.contains(&"k.0007".to_owned()));
    assert_eq!(kv.store().entries("").await.unwrap().len(), 1999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_over_the_buckets_max_size_is_payload_too_large() {
    let server = NatsServer::start();
    let client = aegis_sdk::Client::connect(&aegis_sdk::ConnectOptions::new(server.url()))
        .await
        .unwrap();
    let kv = aegis_sdk::application::kv::Kv::open(
        &client,
        aegis_sdk::ports::kv::BucketConfig::new("small-values").max_value_size(100),
    )
    .await
    .unwrap();
    let err = kv.put("big", &"x".repeat(500)).await.unwrap_err();
    assert_eq!(err.kind(), aegis_sdk::ErrorKind::PayloadTooLarge, "{err}");
    assert!(kv.put("small", &"x".repeat(10)).await.is_ok());
}
