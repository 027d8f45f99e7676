//! One KV contract, two adapters: every behaviour here runs against a real nats-server
//! and against the in-memory bucket, so the two cannot drift apart.

#[macro_use]
mod backends;

use std::time::Duration;

use aegis_sdk::application::kv::Kv;
use aegis_sdk::ports::kv::{
    BucketConfig, KvChange, KvOperation, KvWatch, StorageKind, WatchStart, WatchTarget,
};
use aegis_sdk::ErrorKind;
use backends::Backend;
use bytes::Bytes;
use futures::StreamExt;

async fn bucket(backend: &Backend, name: &str) -> Kv {
    Kv::open(&backend.client().await, BucketConfig::new(name).history(10))
        .await
        .expect("open bucket")
}

async fn next(watch: &mut KvWatch) -> KvChange {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("a change within 10 s")
        .expect("watch still open")
}

async fn revisions_create_update_delete_purge(backend: Backend) {
    let kv = bucket(&backend, "ops").await;
    let store = kv.store();

    assert!(kv.get::<u32>("missing").await.unwrap().is_none());
    let r1 = kv.put("alice", &30).await.unwrap();
    let got = kv.get::<u32>("alice").await.unwrap().unwrap();
    assert_eq!((got.value, got.revision), (30, r1));

    // Revisions are bucket-wide and only grow.
    let rb = kv.create("bob", &40, None).await.unwrap();
    assert!(rb > r1);
    let err = kv.create("alice", &1, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);

    // update is a compare-and-set on the key's last revision.
    let r2 = kv.update("alice", &31, r1).await.unwrap();
    assert!(r2 > rb);
    let err = kv.update("alice", &99, r1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevisionMismatch);
    assert_eq!(kv.get::<u32>("alice").await.unwrap().unwrap().value, 31);
    let err = kv.update("nobody", &1, 5).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevisionMismatch);
    // Revision 0 means "never written".
    let fresh = kv.update("fresh", &1, 0).await.unwrap();
    let err = kv.update("fresh", &2, 0).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevisionMismatch);
    kv.update("fresh", &2, fresh).await.unwrap();

    // delete with an expected revision; a deleted key can be created again but not
    // updated from revision 0, since its delete is on record.
    let err = kv.delete_if("alice", r1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevisionMismatch);
    assert!(kv.get::<u32>("alice").await.unwrap().is_some());
    kv.delete_if("alice", r2).await.unwrap();
    assert!(kv.get::<u32>("alice").await.unwrap().is_none());
    assert!(!kv.keys("").await.unwrap().contains(&"alice".to_owned()));
    let err = kv.update("alice", &5, 0).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevisionMismatch);
    kv.create("alice", &1, None).await.unwrap();
    assert_eq!(kv.get::<u32>("alice").await.unwrap().unwrap().value, 1);

    // purge with and without an expected revision; it leaves one marker.
    let err = store.purge("bob", Some(rb + 1000)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevisionMismatch);
    store.purge("bob", Some(rb)).await.unwrap();
    assert!(kv.get::<u32>("bob").await.unwrap().is_none());
    let history = store.history("bob", 10).await.unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].0, KvOperation::Purge);
    kv.create("bob", &2, None).await.unwrap();

    // Deleting a key that never existed is fine; a value of another type is Decode.
    kv.delete("never").await.unwrap();
    kv.put("raw", &"text").await.unwrap();
    assert_eq!(
        kv.get::<u32>("raw").await.unwrap_err().kind(),
        ErrorKind::Decode
    );
}

async fn concurrent_writers_conflict(backend: Backend) {
    let kv = bucket(&backend, "race").await;

    // Many creates of one key: exactly one wins.
    let creates = (0..8).map(|i| {
        let kv = kv.clone();
        tokio::spawn(async move { kv.create("leader", &i, None).await })
    });
    let results: Vec<_> = futures::future::join_all(creates).await;
    let won = results
        .iter()
        .filter(|r| r.as_ref().unwrap().is_ok())
        .count();
    assert_eq!(won, 1, "{results:?}");
    for result in &results {
        if let Err(e) = result.as_ref().unwrap() {
            assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        }
    }

    // Many updates from one revision: exactly one wins.
    let revision = kv.get::<i32>("leader").await.unwrap().unwrap().revision;
    let updates = (0..8).map(|i| {
        let kv = kv.clone();
        tokio::spawn(async move { kv.update("leader", &(100 + i), revision).await })
    });
    let results: Vec<_> = futures::future::join_all(updates).await;
    let winners: Vec<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().unwrap().as_ref().ok().copied())
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for result in &results {
        if let Err(e) = result.as_ref().unwrap() {
            assert_eq!(e.kind(), ErrorKind::RevisionMismatch);
        }
    }
    let now = kv.get::<i32>("leader").await.unwrap().unwrap();
    assert_eq!(now.revision, winners[0]);
    assert!(now.value >= 100);
}

async fn keys_history_bulk_and_status(backend: Backend) {
    let kv = bucket(&backend, "bulk").await;
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
    for n in 1..=4 {
        kv.put("counter", &n).await.unwrap();
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

    // A bucket keeps `history` records per key.
    let short = Kv::open(
        &backend.client().await,
        BucketConfig::new("short").history(2),
    )
    .await
    .unwrap();
    for n in 1..=5 {
        short.put("k", &n).await.unwrap();
    }
    let kept = short.history::<u32>("k", 10).await.unwrap();
    assert_eq!(kept.iter().map(|v| v.value).collect::<Vec<_>>(), vec![5, 4]);

    let status = kv.status().await.unwrap();
    assert_eq!(status.bucket, "bulk");
    assert_eq!(status.history, 10);
    assert!(status.ttl_enabled);
    // 5 puts, 2 delete markers, 4 more puts and a delete: every record is kept.
    assert_eq!(status.values, 12);
    assert_eq!(
        status.last_revision,
        store.history("counter", 1).await.unwrap()[0].1.revision
    );
}

async fn bucket_configuration_and_existing_buckets(backend: Backend) {
    let client = backend.client().await;
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
    let err = kv
        .store()
        .put("big", Bytes::from(vec![b'x'; 100]), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);
    assert!(kv
        .store()
        .put("small", Bytes::from(vec![b'x'; 10]), None)
        .await
        .is_ok());
    let err = kv
        .put_with_ttl("k", &1, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);

    // Opening again, from another connection, with another configuration: the bucket
    // is used as it is, with its values.
    let again = Kv::open(
        &backend.client().await,
        BucketConfig::new("configured").history(1),
    )
    .await
    .unwrap();
    assert_eq!(again.status().await.unwrap().history, 5);
    assert!(again.store().get("small").await.unwrap().is_some());

    for bad in ["a.b", "", "sp ace"] {
        let err = Kv::open(&client, BucketConfig::new(bad)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?}");
    }
    let err = Kv::open(&client, BucketConfig::new("h").history(0))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

async fn invalid_keys_are_typed_errors(backend: Backend) {
    let kv = bucket(&backend, "keys").await;
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
}

async fn ttl_expiry_seen_by_get_keys_watcher_and_create(backend: Backend) {
    let kv = bucket(&backend, "leases").await;

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
        (put.key.as_str(), put.operation, put.revision),
        ("lease.a", KvOperation::Put, written)
    );
    assert_eq!(next(&mut watch).await.key, "lease.keep");

    // The key goes after its TTL; the watcher hears of it, with a new revision.
    let expired = next(&mut watch).await;
    assert_eq!(
        (expired.key.as_str(), expired.operation),
        ("lease.a", KvOperation::Expired)
    );
    assert!(expired.revision > written);
    assert!(kv.get::<String>("lease.a").await.unwrap().is_none());
    assert_eq!(kv.keys("lease.").await.unwrap(), vec!["lease.keep"]);

    // create works after expiry and keeps its own TTL.
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
    // The key that had no TTL is still there.
    assert!(kv.get::<String>("lease.keep").await.unwrap().is_some());
}

async fn renewing_a_ttl_keeps_the_key(backend: Backend) {
    let kv = bucket(&backend, "renewed").await;
    let mut revision = kv
        .put_with_ttl("lease", &0, Duration::from_secs(2))
        .await
        .unwrap();

    // Renewed every half TTL for three TTLs: never gone.
    for n in 1..=6 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let current = kv.get::<u32>("lease").await.unwrap();
        assert_eq!(current.map(|v| v.revision), Some(revision), "renewal {n}");
        revision = kv
            .store()
            .update(
                "lease",
                Kv::encode(&n).unwrap(),
                revision,
                Some(Duration::from_secs(2)),
            )
            .await
            .unwrap();
    }

    // Left alone, it goes.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(kv.get::<u32>("lease").await.unwrap().is_none());
}

async fn prefix_watch_reports_deletes_and_purges_with_their_keys(backend: Backend) {
    let kv = bucket(&backend, "watched").await;
    let store = kv.store();

    // A prefix that does not end on a token boundary.
    let mut watch = store
        .watch(WatchTarget::Prefix("order-".into()), WatchStart::NewOnly)
        .await
        .unwrap();
    assert!(watch.current_at_start());
    kv.put("order-1", &1).await.unwrap();
    kv.put("other", &0).await.unwrap();
    kv.put("order-2", &2).await.unwrap();
    kv.delete("order-1").await.unwrap();
    kv.purge("order-2").await.unwrap();

    let mut seen = Vec::new();
    for _ in 0..4 {
        let change = next(&mut watch).await;
        seen.push((change.key, change.operation));
    }
    assert_eq!(
        seen,
        vec![
            ("order-1".to_owned(), KvOperation::Put),
            ("order-2".to_owned(), KvOperation::Put),
            ("order-1".to_owned(), KvOperation::Delete),
            ("order-2".to_owned(), KvOperation::Purge),
        ]
    );

    // A watch on one key sees that key only.
    let mut one = store
        .watch(WatchTarget::Key("other".into()), WatchStart::CurrentValues)
        .await
        .unwrap();
    let current = next(&mut one).await;
    assert_eq!((current.key.as_str(), current.pending), ("other", 0));
    kv.put("order-3", &3).await.unwrap();
    kv.put("other", &1).await.unwrap();
    let change = next(&mut one).await;
    assert_eq!(
        (change.key.as_str(), change.value.as_ref()),
        ("other", &b"1"[..])
    );
}

async fn watch_current_values_first_then_changes(backend: Backend) {
    let kv = bucket(&backend, "current").await;
    kv.put("cfg.a", &1).await.unwrap();
    kv.put("cfg.a", &2).await.unwrap();
    kv.put("cfg.b", &3).await.unwrap();
    kv.put("cfg.gone", &4).await.unwrap();
    kv.delete("cfg.gone").await.unwrap();

    let mut watch = kv.watch_prefix("cfg.").await.unwrap();
    assert!(!watch.current_at_start());
    let first = next(&mut watch).await;
    let second = next(&mut watch).await;
    let third = next(&mut watch).await;
    assert_eq!(
        (first.key.as_str(), first.value.as_ref(), first.pending),
        ("cfg.a", &b"2"[..], 2)
    );
    assert_eq!((second.key.as_str(), second.pending), ("cfg.b", 1));
    // A deleted key shows as its delete.
    assert_eq!(
        (third.key.as_str(), third.operation, third.pending),
        ("cfg.gone", KvOperation::Delete, 0)
    );

    kv.put("cfg.c", &4).await.unwrap();
    assert_eq!(next(&mut watch).await.key, "cfg.c");
}

async fn watch_on_empty_bucket_stays_open(backend: Backend) {
    let kv = bucket(&backend, "empty").await;
    let mut watch = kv.watch_prefix("").await.unwrap();
    assert!(watch.current_at_start());
    let quiet = tokio::time::timeout(Duration::from_millis(500), watch.next()).await;
    assert!(quiet.is_err(), "nothing arrives and the watch does not end");

    let revision = kv.put("late", &"value").await.unwrap();
    let change = next(&mut watch).await;
    assert_eq!((change.key.as_str(), change.revision), ("late", revision));
    assert_eq!(Kv::decode::<String>(&change.value).unwrap(), "value");
}

async fn an_expiring_revision_over_older_history(backend: Backend) {
    // History 10: a key written without a TTL, then with one. What is left once the
    // second write expires is the server's rule; both adapters must agree on it.
    let kv = bucket(&backend, "layers").await;
    let first = kv.put("k", &1).await.unwrap();
    let second = kv
        .put_with_ttl("k", &2, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(kv.get::<u32>("k").await.unwrap().unwrap().revision, second);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = kv.get::<u32>("k").await.unwrap();
    let history: Vec<(KvOperation, u64)> = kv
        .store()
        .history("k", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(op, entry)| (op, entry.revision))
        .collect();
    // The earlier value is current again, and the expired one is gone from history.
    assert_eq!(
        after.map(|v| (v.value, v.revision)),
        Some((1, first)),
        "{history:?}"
    );
    assert_eq!(history, vec![(KvOperation::Put, first)]);
}

async fn a_shorter_key_ttl_is_raised_to_the_marker_time_only_with_history(backend: Backend) {
    // A 1 s TTL in buckets keeping markers for 3 s: with history 1 it applies as given;
    // with history 3 it is raised to the marker time. A marker time of 2.9 s counts as
    // 2 s (whole seconds).
    let client = backend.client().await;
    let open = |name: &str, history: u8, markers: Duration| {
        Kv::open(
            &client,
            BucketConfig::new(name)
                .history(history)
                .expiry_markers(Some(markers)),
        )
    };
    let buckets = [
        open("raise1", 1, Duration::from_secs(3)).await.unwrap(),
        open("raise3", 3, Duration::from_secs(3)).await.unwrap(),
        open("trunc3", 3, Duration::from_millis(2900))
            .await
            .unwrap(),
    ];
    let start = tokio::time::Instant::now();
    for kv in &buckets {
        kv.put_with_ttl("k", &1, Duration::from_secs(1))
            .await
            .unwrap();
    }

    // Per bucket: when a read last found the key (as it was sent) and when one first
    // found it gone (as it came back), since the puts.
    let mut last_seen = [Duration::ZERO; 3];
    let mut gone: [Option<Duration>; 3] = [None; 3];
    while gone.iter().any(Option::is_none) && start.elapsed() < Duration::from_secs(10) {
        for (i, kv) in buckets.iter().enumerate() {
            if gone[i].is_some() {
                continue;
            }
            let asked = start.elapsed();
            if kv.get::<u32>("k").await.unwrap().is_some() {
                last_seen[i] = asked;
            } else {
                gone[i] = Some(start.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone = gone.map(|at| at.expect("every key expires within 10 s"));
    let report = format!("last seen {last_seen:?}, gone {gone:?}");

    // History 1: gone after about 1 s, well before the 3 s marker time.
    assert!(gone[0] < Duration::from_millis(2500), "{report}");
    // History 3: raised, so still there long after 1 s.
    assert!(last_seen[1] > Duration::from_millis(1500), "{report}");
    // Raised to 2 s, not to 2.9 s.
    assert!(last_seen[2] > Duration::from_millis(1500), "{report}");
    assert!(gone[2] < Duration::from_millis(2850), "{report}");
    for kv in &buckets {
        let history = kv.store().history("k", 5).await.unwrap();
        assert_eq!(history[0].0, KvOperation::Expired, "{history:?}");
    }
}

async fn value_size_limit_counts_the_headers_of_a_write(backend: Backend) {
    // A 64-byte bucket: the server counts a write's headers with its value. Headers
    // (see `BucketConfig::max_value_size`): a TTL of 5 s 26 bytes, an expected
    // revision of one digit 52, of two digits 53, a delete marker 31, a purge marker 51
    // and, with an expected revision of one digit, 71 and 91.
    let client = backend.client().await;
    let kv = Kv::open(
        &client,
        BucketConfig::new("sized").history(5).max_value_size(64),
    )
    .await
    .unwrap();
    let store = kv.store();
    let bytes = |n: usize| Bytes::from(vec![b'x'; n]);
    let ttl = Some(Duration::from_secs(5));
    let too_large = |result: aegis_sdk::Result<u64>, what: &str| {
        let err = result.expect_err(what);
        assert_eq!(err.kind(), ErrorKind::PayloadTooLarge, "{what}: {err}");
    };

    // Plain puts: the value alone.
    let r1 = store.put("plain", bytes(64), None).await.unwrap();
    too_large(store.put("plain", bytes(65), None).await, "put 65");
    assert_eq!(
        store.get("plain").await.unwrap().unwrap().revision,
        r1,
        "a refused write leaves nothing"
    );

    // With a TTL.
    too_large(store.put("ttl", bytes(64), ttl).await, "put 64 with TTL");
    too_large(store.put("ttl", bytes(39), ttl).await, "put 39 with TTL");
    store.put("ttl", bytes(38), ttl).await.unwrap();

    // With an expected revision: create, update.
    too_large(store.create("new", bytes(64), None).await, "create 64");
    too_large(store.create("new", bytes(13), None).await, "create 13");
    store.create("new", bytes(12), None).await.unwrap();
    too_large(store.update("upd", bytes(64), 0, None).await, "update 64");
    too_large(store.update("upd", bytes(13), 0, None).await, "update 13");
    let r2 = store.update("upd", bytes(12), 0, None).await.unwrap();
    // The size is checked before the revision.
    too_large(
        store.update("upd", bytes(64), r2 + 1, None).await,
        "update 64 from a wrong revision",
    );
    too_large(
        store.create("plain", bytes(64), None).await,
        "create 64 of an existing key",
    );
    let err = store.create("plain", bytes(1), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    // TTL and expected revision together: 66 header bytes, over the limit by themselves.
    too_large(
        store.create("both", bytes(0), ttl).await,
        "create 0 with TTL",
    );

    // Deletes and purges carry headers too.
    store.delete("plain", None).await.unwrap();
    let err = store.delete("new", Some(1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge, "{err}");
    store.purge("new", None).await.unwrap();
    let err = store.purge("upd", Some(r2)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge, "{err}");

    // Create over a delete marker expects the marker's revision, here of two digits.
    for _ in 0..10 {
        store.put("filler", bytes(1), None).await.unwrap();
    }
    store.delete("again", None).await.unwrap();
    let marker = store.history("again", 1).await.unwrap()[0].1.revision;
    assert!((10..100).contains(&marker), "{marker}");
    too_large(
        store.create("again", bytes(12), None).await,
        "create 12 over a two-digit marker",
    );
    store.create("again", bytes(11), None).await.unwrap();

    // A bucket without its own limit has the server's 1 MiB, headers counted.
    let open = Kv::open(&client, BucketConfig::new("unsized"))
        .await
        .unwrap();
    let mib = 1024 * 1024;
    open.store().put("a", bytes(mib), None).await.unwrap();
    too_large(
        open.store().create("b", bytes(mib), None).await,
        "create 1 MiB",
    );
    too_large(
        open.store().create("b", bytes(mib - 51), None).await,
        "create 1 MiB - 51",
    );
    open.store()
        .create("b", bytes(mib - 52), None)
        .await
        .unwrap();
}

async fn a_huge_ttl_is_the_longest_there_is(backend: Backend) {
    // Expiry markers kept "forever", and keys that live "forever": taken as the longest.
    let config = BucketConfig::new("forever").expiry_markers(Some(Duration::MAX));
    let kv = Kv::open(&backend.client().await, config).await.unwrap();
    for huge in [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::from_secs(1_000_000_000_000),
        aegis_sdk::ports::kv::MAX_KEY_TTL,
    ] {
        let revision = kv.put_with_ttl("k", &1, huge).await.unwrap();
        let revision = kv
            .store()
            .update("k", Kv::encode(&2).unwrap(), revision, Some(huge))
            .await
            .unwrap();
        assert_eq!(
            kv.get::<u32>("k")
                .await
                .unwrap()
                .map(|e| (e.revision, e.value)),
            Some((revision, 2))
        );
        kv.delete("k").await.unwrap();
        kv.store()
            .create("k", Kv::encode(&3).unwrap(), Some(huge))
            .await
            .unwrap();
        kv.purge("k").await.unwrap();
    }
}

contract!(
    revisions_create_update_delete_purge,
    concurrent_writers_conflict,
    keys_history_bulk_and_status,
    bucket_configuration_and_existing_buckets,
    invalid_keys_are_typed_errors,
    value_size_limit_counts_the_headers_of_a_write,
    prefix_watch_reports_deletes_and_purges_with_their_keys,
    watch_current_values_first_then_changes,
    a_huge_ttl_is_the_longest_there_is;
    paused:
    an_expiring_revision_over_older_history,
    a_shorter_key_ttl_is_raised_to_the_marker_time_only_with_history,
    ttl_expiry_seen_by_get_keys_watcher_and_create,
    renewing_a_ttl_keeps_the_key,
    watch_on_empty_bucket_stays_open,
);
