//! RPC across three load-balanced instances, then a sticky call through discovery.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aegis_sdk::application::discovery::Discovery;
use aegis_sdk::application::registration::RegistryOptions;
use aegis_sdk::application::routing::Router;
use aegis_sdk::application::selection::SelectionStrategy;
use aegis_sdk::{HandlerError, RpcContext, Service};
use serde_json::{json, Value};

use super::{micros, percentile, Narrator};
use crate::output::CliResult;
use crate::Global;

pub(super) async fn run(global: &Global, say: &Narrator, calls: usize) -> CliResult<Value> {
    say.step("RPC: 3 instances of echo-service in queue group rpc.echo-service");
    let mut services = Vec::new();
    for i in 0..3 {
        let service = Service::builder("echo-service")
            .instance_id(format!("echo-service-demo{i}"))
            .rpc("echo", |ctx: RpcContext, params: Value| async move {
                Ok::<_, HandlerError>(json!({
                    "echo": params.get("message").cloned().unwrap_or(Value::Null),
                    "instance": ctx.instance_id().as_str(),
                }))
            })
            .with_registry(RegistryOptions::default())
            .build()?;
        service.start(&global.connect().await?).await?;
        services.push(service);
    }

    let client = global.connect().await?;
    let mut latencies = Vec::with_capacity(calls);
    let mut per_instance = BTreeMap::<String, usize>::new();
    for i in 0..calls {
        let sent = Instant::now();
        let reply: Value = client
            .call(
                "echo-service",
                "echo",
                json!({"message": format!("hello {i}")}),
            )
            .timeout(Duration::from_secs(2))
            .await?;
        latencies.push(sent.elapsed());
        let instance = reply["instance"].as_str().unwrap_or("?").to_owned();
        *per_instance.entry(instance).or_default() += 1;
    }
    latencies.sort_unstable();
    for (instance, count) in &per_instance {
        say.line(&format!("{instance} served {count} calls"));
    }
    let unknown = client
        .call::<_, Value>("no-such-service", "ping", json!({}))
        .await
        .err()
        .map(|e| e.kind().as_str().to_owned())
        .unwrap_or_default();
    say.line(&format!(
        "a call to a service nobody runs fails at once: {unknown}"
    ));

    say.step("discovery: the registry lists the instances; a sticky router pins one");
    let discovery = Discovery::open(&client).await?.cached(&client).await?;
    let listed = discovery.instances("echo-service", true);
    say.line(&format!(
        "registry lists {} healthy instances",
        listed.len()
    ));
    let router = Router::new(&client, discovery, SelectionStrategy::Sticky);
    let preferred = "echo-service-demo1";
    router.selector().prefer("echo-service", preferred);
    let sticky_calls = 20;
    let mut sticky_instances = BTreeMap::<String, usize>::new();
    for _ in 0..sticky_calls {
        let reply: Value = router
            .call("echo-service", "echo", json!({"message": "sticky"}))
            .await?;
        *sticky_instances
            .entry(reply["instance"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    let sticky_instance = sticky_instances.keys().next().cloned().unwrap_or_default();
    say.line(&format!(
        "{sticky_calls} sticky calls went to {sticky_instances:?}"
    ));

    for service in &services {
        service.stop().await?;
    }
    Ok(json!({
        "calls": calls,
        "instances": per_instance.len(),
        "per_instance": per_instance,
        "p50_us": micros(percentile(&latencies, 0.50)),
        "p99_us": micros(percentile(&latencies, 0.99)),
        "unknown_service_error": unknown,
        "registry_listed": listed.len(),
        "sticky_calls": sticky_calls,
        "sticky_instance": if sticky_instances.len() == 1 { sticky_instance } else { format!("{sticky_instances:?}") },
    }))
}
