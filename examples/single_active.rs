//! A single-active service: run it three times, one instance leads, the others stand by;
//! kill the leader and watch another take over.
//!
//! Start a local server (`cargo run -p aegis-cli -- server`), then in three terminals:
//!
//! ```text
//! NATS_URL=nats://127.0.0.1:4222 cargo run -p aegis-examples --example single_active
//! ```
//!
//! The leader logs `I am the leader` with its fencing token; the standbys log who leads.
//! Kill the leader (Ctrl-C hands over at once; `kill -9` is taken over within about a
//! second with the default balanced policy). `POLICY=aggressive` or `conservative`
//! chooses another failover policy. The exclusive method `tick` runs on the leader only,
//! wherever it is called: `cargo run -p aegis-cli -- call billing-service tick '{}'`.
//! `cargo run -p aegis-cli -- leader billing-service` shows the leader, its fencing token
//! and since when; `cargo run -p aegis-cli -- services billing-service` lists the
//! instances (they register in the service registry), which one holds the lease, and,
//! after a `kill -9`, the dead one's entry marked stale until it expires.

use aegis_sdk::application::registration::RegistryOptions;
use aegis_sdk::{
    Client, ConnectOptions, FailoverPolicy, HandlerError, LeadershipEvent, LeadershipStatus,
    RpcContext, Service,
};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    aegis_examples::finish(run().await)
}

async fn run() -> aegis_examples::Result {
    aegis_examples::init_tracing();
    let client = Client::connect(&ConnectOptions::new(aegis_examples::nats_url())).await?;
    let policy = match std::env::var("POLICY").as_deref() {
        Ok("aggressive") => FailoverPolicy::aggressive(),
        Ok("conservative") => FailoverPolicy::conservative(),
        _ => FailoverPolicy::balanced(),
    };

    let service = Service::builder("billing-service")
        .single_active("default", policy)
        .exclusive_rpc("tick", |ctx: RpcContext, _params: Value| async move {
            // Attach the token to side effects, so a store can refuse a deposed leader.
            Ok::<_, HandlerError>(json!({
                "leader": ctx.instance_id().as_str(),
                "fencing_token": ctx.fencing_token(),
            }))
        })
        .with_registry(RegistryOptions::default())
        .build()?;
    let leadership = service
        .leadership()
        .cloned()
        .ok_or("single-active mode is on")?;
    let mut events = leadership.events();
    let mut status = leadership.watch();
    service.start(&client).await?;
    tracing::info!(instance = %service.instance_id(), "billing-service running; Ctrl-C (or SIGTERM) to stop");
    // SIGTERM is how systemd and Kubernetes stop a process: hand over as for Ctrl-C.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;

    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            Ok(event) = events.recv() => match event {
                LeadershipEvent::Elected { token } => {
                    tracing::info!(token, "I am the leader");
                }
                LeadershipEvent::Lost { token, reason } => {
                    tracing::warn!(token, ?reason, "I am no longer the leader");
                }
                _ => {}
            },
            Ok(()) = status.changed() => {
                if let LeadershipStatus::Standby { leader: Some(leader) } = &*status.borrow() {
                    tracing::info!(%leader, "standing by");
                }
            }
        }
    }
    // A leader hands over here: it finishes its running calls, then releases the lease.
    service.stop().await?;
    tracing::info!("stopped; a leader handed over");
    Ok(())
}
