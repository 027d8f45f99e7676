//! Single-active: three `ledger` processes elect a leader; the leader is killed with
//! SIGKILL and a standby takes over while a client keeps calling.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aegis_sdk::application::registration::RegistryOptions;
use aegis_sdk::{Client, FailoverPolicy, HandlerError, RpcContext, Service};
use serde_json::{json, Value};

use super::Narrator;
use crate::output::{CliError, CliResult};
use crate::Global;

/// Arguments of the hidden `aegis demo-node` subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct NodeArgs {
    /// The instance id to run as.
    #[arg(long)]
    instance: String,
}

/// Runs one `ledger` instance in single-active mode (aggressive failover) until stdin
/// closes, so that it never outlives the demo that started it.
pub(crate) async fn node(global: &Global, args: NodeArgs) -> CliResult {
    let service = Service::builder("ledger")
        .instance_id(args.instance)
        .single_active("default", FailoverPolicy::aggressive())
        // Listed by `aegis services` (with who holds the lease) while the demo runs.
        .with_registry(RegistryOptions::default())
        .exclusive_rpc("whoami", |ctx: RpcContext, _: Value| async move {
            Ok::<_, HandlerError>(json!({
                "leader": ctx.instance_id().as_str(),
                "fencing_token": ctx.fencing_token(),
            }))
        })
        .build()?;
    service.start(&global.connect().await?).await?;
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await
    .map_err(|e| CliError::new(e.to_string()))?;
    service.stop().await?;
    Ok(())
}

/// Kills the node processes when the demo ends, however it ends.
struct Nodes(Vec<(String, Child)>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn whoami(client: &Client) -> aegis_sdk::Result<Value> {
    client
        .call("ledger", "whoami", json!({}))
        .timeout(Duration::from_secs(5))
        .await
}

pub(super) async fn run(global: &Global, say: &Narrator) -> CliResult<Value> {
    say.step("single-active: 3 ledger processes elect one leader (aggressive policy)");
    let exe = std::env::current_exe()?;
    let url = global.url();
    let mut nodes = Nodes(Vec::new());
    for i in 0..3 {
        let instance = format!("ledger-demo{i}");
        let child = Command::new(&exe)
            .args(["--server", &url, "demo-node", "--instance", &instance])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        nodes.0.push((instance, child));
    }

    let client = global.connect().await?;
    // The first calls may arrive while the nodes still start and elect.
    let deadline = Instant::now() + Duration::from_secs(15);
    let first = loop {
        match whoami(&client).await {
            Ok(reply) => break reply,
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, "waiting for a leader");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => return Err(error.into()),
        }
    };
    let leader = first["leader"].as_str().unwrap_or("?").to_owned();
    say.line(&format!(
        "leader: {leader} (fencing token {})",
        first["fencing_token"]
    ));

    let Some(position) = nodes.0.iter().position(|(id, _)| *id == leader) else {
        return Err(CliError::new(format!("unknown leader {leader}")));
    };
    say.line(&format!("killing {leader} with SIGKILL"));
    let killed_at = Instant::now();
    let (_, mut child) = nodes.0.remove(position);
    child.kill()?;
    let _ = child.wait();

    let deadline = Instant::now() + Duration::from_secs(15);
    let next = loop {
        match whoami(&client).await {
            Ok(reply) if reply["leader"] != leader.as_str() => break reply,
            Ok(_) => {}
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, "waiting for a new leader");
            }
            Err(error) => return Err(error.into()),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let failover = killed_at.elapsed();
    let new_leader = next["leader"].as_str().unwrap_or("?").to_owned();
    say.line(&format!(
        "{new_leader} took over (fencing token {}) {failover:?} after the kill",
        next["fencing_token"]
    ));
    drop(nodes);
    Ok(json!({
        "killed_leader": leader,
        "new_leader": new_leader,
        "failover_ms": failover.as_secs_f64() * 1000.0,
        "old_token": first["fencing_token"],
        "new_token": next["fencing_token"],
    }))
}
