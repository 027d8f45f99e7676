//! One transport contract, two adapters: core publish, subscribe, queue groups and
//! request/reply through the port, against a real nats-server and in memory.

#[macro_use]
mod backends;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aegis_sdk::ports::{Headers, Subscription, Transport};
use aegis_sdk::ErrorKind;
use backends::Backend;
use bytes::Bytes;
use futures::StreamExt;

async fn transport(backend: &Backend) -> Arc<dyn Transport> {
    backend.client().await.transport().clone()
}

async fn next(subscription: &mut Subscription) -> aegis_sdk::ports::InboundMessage {
    tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("a message within 5 s")
        .expect("subscription open")
}

async fn quiet(subscription: &mut Subscription) -> bool {
    tokio::time::timeout(Duration::from_millis(300), subscription.next())
        .await
        .is_err()
}

async fn subscribers_and_wildcards(backend: Backend) {
    let (a, b) = (transport(&backend).await, transport(&backend).await);
    let mut exact = a.subscribe("orders.created".into(), None).await.unwrap();
    let mut star = a.subscribe("orders.*".into(), None).await.unwrap();
    let mut tail = b.subscribe("orders.>".into(), None).await.unwrap();
    a.flush().await.unwrap();
    b.flush().await.unwrap();

    let mut headers = Headers::new();
    headers.insert("X-Trace", "t-1");
    b.publish("orders.created".into(), headers, Bytes::from_static(b"1"))
        .await
        .unwrap();
    b.publish(
        "orders.eu.created".into(),
        Headers::new(),
        Bytes::from_static(b"2"),
    )
    .await
    .unwrap();
    b.flush().await.unwrap();

    let got = next(&mut exact).await;
    assert_eq!(
        (got.subject.as_str(), &got.payload[..]),
        ("orders.created", &b"1"[..])
    );
    assert_eq!(got.headers.get("X-Trace"), Some("t-1"));
    assert_eq!(&next(&mut star).await.payload[..], b"1");
    assert_eq!(&next(&mut tail).await.payload[..], b"1");
    assert_eq!(&next(&mut tail).await.payload[..], b"2");
    assert!(quiet(&mut exact).await);
    assert!(quiet(&mut star).await, "`*` is one token");
}

async fn queue_groups_share_and_plain_subscribers_see_all(backend: Backend) {
    let client = transport(&backend).await;
    let mut members = Vec::new();
    for _ in 0..3 {
        // Each member on a connection of its own, registered before anything is sent.
        let connection = transport(&backend).await;
        let member = connection
            .subscribe("jobs.run".into(), Some("workers".into()))
            .await
            .unwrap();
        connection.flush().await.unwrap();
        members.push(member);
    }
    let mut other_group = client
        .subscribe("jobs.run".into(), Some("auditors".into()))
        .await
        .unwrap();
    let mut plain = client.subscribe("jobs.run".into(), None).await.unwrap();
    client.flush().await.unwrap();

    for i in 0..90u32 {
        client
            .publish(
                "jobs.run".into(),
                Headers::new(),
                Bytes::from(i.to_string()),
            )
            .await
            .unwrap();
    }
    client.flush().await.unwrap();

    let mut per_member: HashMap<usize, usize> = HashMap::new();
    let mut total = 0;
    while total < 90 {
        let mut progressed = false;
        for (i, member) in members.iter_mut().enumerate() {
            if let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(50), member.next()).await
            {
                *per_member.entry(i).or_default() += 1;
                total += 1;
                progressed = true;
            }
        }
        assert!(progressed || total == 90, "stalled at {total}");
    }
    for member in &mut members {
        assert!(quiet(member).await, "each message went to one member");
    }
    assert_eq!(per_member.len(), 3, "every member got some: {per_member:?}");
    for _ in 0..90 {
        next(&mut other_group).await;
        next(&mut plain).await;
    }
    assert!(quiet(&mut other_group).await);
    assert!(quiet(&mut plain).await);
}

async fn requests_replies_and_their_failures(backend: Backend) {
    let client = transport(&backend).await;
    let server = transport(&backend).await;

    let err = client
        .request(
            "svc.echo".into(),
            Headers::new(),
            Bytes::from_static(b"x"),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoResponders);

    let mut requests = server
        .subscribe("svc.*".into(), Some("svc".into()))
        .await
        .unwrap();
    server.flush().await.unwrap();
    let responder = tokio::spawn({
        let server = server.clone();
        async move {
            while let Some(request) = requests.next().await {
                if request.subject == "svc.silent" {
                    continue;
                }
                let mut headers = Headers::new();
                headers.insert("X-Seen", request.headers.get("X-Id").unwrap_or("-"));
                let mut body = request.payload.to_vec();
                body.reverse();
                server
                    .publish(request.reply.unwrap(), headers, body.into())
                    .await
                    .unwrap();
            }
        }
    });

    let mut headers = Headers::new();
    headers.insert("X-Id", "42");
    let reply = client
        .request(
            "svc.echo".into(),
            headers,
            Bytes::from_static(b"abc"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(&reply.payload[..], b"cba");
    assert_eq!(reply.headers.get("X-Seen"), Some("42"));

    let started = tokio::time::Instant::now();
    let err = client
        .request(
            "svc.silent".into(),
            Headers::new(),
            Bytes::new(),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(started.elapsed() >= Duration::from_millis(300));

    let too_big = Bytes::from(vec![0u8; client.max_payload() + 1]);
    let err = client
        .request(
            "svc.echo".into(),
            Headers::new(),
            too_big.clone(),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);
    let err = client
        .publish("svc.echo".into(), Headers::new(), too_big)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);
    responder.abort();
}

async fn drained_or_dropped_subscriptions_stop(backend: Backend) {
    let client = transport(&backend).await;
    let mut subscription = client.subscribe("feed".into(), None).await.unwrap();
    client.flush().await.unwrap();
    for i in 0..3u8 {
        client
            .publish("feed".into(), Headers::new(), Bytes::from(vec![i]))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    // Let the messages arrive, then drain: they are still yielded, then the stream ends.
    tokio::time::sleep(Duration::from_millis(100)).await;
    subscription.drain().await.unwrap();
    client
        .publish("feed".into(), Headers::new(), Bytes::from_static(b"late"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_secs(5), subscription.next()).await
    {
        seen.push(message.payload[0]);
    }
    assert_eq!(seen, vec![0, 1, 2]);

    // A dropped responder is gone: nobody answers any more.
    let responder = client
        .subscribe("gone.soon".into(), Some("q".into()))
        .await
        .unwrap();
    client.flush().await.unwrap();
    drop(responder);
    client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = client
        .request(
            "gone.soon".into(),
            Headers::new(),
            Bytes::new(),
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoResponders);
}

async fn invalid_subjects_and_queue_groups_are_refused(backend: Backend) {
    let client = transport(&backend).await;
    let mut everything = client.subscribe("odd.>".into(), None).await.unwrap();
    client.flush().await.unwrap();

    // Empty, with whitespace, or with an empty token: refused before sending. (A NATS
    // server would take `odd..x` and deliver it to no wildcard subscriber.)
    let unsendable = [
        "",
        " ",
        "odd x",
        "odd\tx",
        "odd.\u{a0}x",
        "odd..x",
        "odd.x.",
        ".odd",
        "odd.",
    ];
    for bad in unsendable {
        let err = client
            .publish(bad.into(), Headers::new(), Bytes::from_static(b"1"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "publish {bad:?}: {err}");
        let err = client
            .request(
                bad.into(),
                Headers::new(),
                Bytes::new(),
                Duration::from_secs(1),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "request {bad:?}: {err}");
    }

    // The same for subscriptions, and `>` anywhere but last.
    for bad in ["", "a b", "a..b", "a.", ".a", "a.>.b", ">.a"] {
        for group in [None, Some("q".to_owned())] {
            let err = client
                .subscribe(bad.into(), group.clone())
                .await
                .map(drop)
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?} {group:?}");
        }
    }
    for group in ["", "a b", "a\tb"] {
        let err = client
            .subscribe("odd.q".into(), Some(group.into()))
            .await
            .map(drop)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "queue group {group:?}");
    }

    // Wildcards as whole tokens only (`a.b*` is a literal), and any other character.
    for good in [">", "*.*", "a.b*", "a.*.c"] {
        client.subscribe(good.into(), None).await.unwrap();
    }
    client
        .publish(
            "odd.\u{e9}".into(),
            Headers::new(),
            Bytes::from_static(b"2"),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
    // Nothing refused went out.
    let first = next(&mut everything).await;
    assert_eq!(
        (first.subject.as_str(), &first.payload[..]),
        ("odd.\u{e9}", &b"2"[..])
    );
    assert!(quiet(&mut everything).await);
}

contract!(
    subscribers_and_wildcards,
    queue_groups_share_and_plain_subscribers_see_all,
    drained_or_dropped_subscriptions_stop,
    invalid_subjects_and_queue_groups_are_refused;
    paused:
    requests_replies_and_their_failures,
);
