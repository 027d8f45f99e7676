//! `aegis leader` (and the LEADER column of `aegis services`) against in-process
//! single-active instances.

use std::time::Duration;

use aegis_sdk::application::registration::RegistryOptions;
use aegis_sdk::{Client, ConnectOptions, FailoverPolicy, HandlerError, RpcContext, Service};
use aegis_test_support::NatsServer;
use serde_json::{json, Value};

use crate::support::{eventually, run};

async fn ledger(url: &str, instance: &str) -> Service {
    let service = Service::builder("ledger")
        .instance_id(instance)
        .single_active("default", FailoverPolicy::aggressive())
        .exclusive_rpc("close", |ctx: RpcContext, _: Value| async move {
            Ok::<_, HandlerError>(json!({"token": ctx.fencing_token()}))
        })
        .with_registry(RegistryOptions::default())
        .build()
        .unwrap();
    let client = Client::connect(&ConnectOptions::new(url)).await.unwrap();
    service.start(&client).await.unwrap();
    service
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_shows_the_leader_and_its_fencing_token() {
    let server = NatsServer::start();
    let url = server.url();

    // Before any election: one line, exit 1.
    assert!(run(&url, &["leader", "ledger"])
        .error(1)
        .contains("never elected"));

    let nodes = [
        ledger(&url, "ledger-1").await,
        ledger(&url, "ledger-2").await,
    ];
    let (leader, token) = eventually(Duration::from_secs(10), || {
        nodes.iter().find_map(|node| {
            let leadership = node.leadership()?;
            Some((node.instance_id().to_string(), leadership.fencing_token()?))
        })
    });

    // The token is the term's, and stays so across renewals.
    for _ in 0..2 {
        let shown = run(&url, &["leader", "ledger", "--json"]).ok().json();
        assert_eq!(shown["leader"], leader.as_str());
        assert_eq!(shown["fencing_token"], token);
        assert_eq!(shown["group"], "default");
        assert!(shown["term_seconds"].as_f64().unwrap() < 30.0);
        assert!(shown["elected_at"].as_str().unwrap().contains('T'));
        std::thread::sleep(FailoverPolicy::aggressive().renew_interval() * 3);
    }
    let text = run(&url, &["leader", "ledger"]).ok().stdout;
    assert!(text.contains(&format!("leader         {leader}")), "{text}");
    assert!(text.contains(&format!("fencing token  {token}")), "{text}");
    assert!(text.contains("since"), "{text}");

    // The registry shows who leads (the lease holder) and who stands by.
    let rows = eventually(Duration::from_secs(10), || {
        let table = run(&url, &["services", "ledger"]).ok().stdout;
        let rows: Vec<String> = table.lines().skip(1).map(str::to_owned).collect();
        let active = rows
            .iter()
            .filter(|r| r.contains("leader (default)"))
            .count();
        let standby = rows
            .iter()
            .filter(|r| r.contains("standby (default)"))
            .count();
        (active == 1 && standby == 1).then_some(rows)
    });
    assert!(
        rows.iter()
            .any(|r| r.contains(&leader) && r.contains("leader (default)")),
        "{rows:?}"
    );

    // Another group has no leader; bad names are usage errors.
    assert!(run(&url, &["leader", "ledger", "--group", "eu"])
        .error(1)
        .contains("no leader"));
    run(&url, &["leader", "ledger", "--group", "a.b"]).error(2);
    run(&url, &["leader", "not a service"]).error(2);

    for node in &nodes {
        node.stop().await.unwrap();
    }
}
