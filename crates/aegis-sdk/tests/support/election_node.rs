//! `aegis-election-node`: one instance of a single-active service, as a separate process
//! for the election tests and the failover benchmark (they kill it, freeze it, restart
//! it). Not part of the SDK's API.
//!
//! Usage: `aegis-election-node <nats-url> <service> <instance-id> <policy>`, with policy
//! `aggressive`, `balanced` or `conservative`.
//!
//! It writes one line per fact to stdout, which the tests read:
//! `READY`, `ELECTED <token>`, `LOST <token> <reason>`, `EXEC <call-id> <token>` (an
//! exclusive call ran here), `FAIL` (the failing exclusive method ran here), `STOPPED`.
//! SIGTERM stops the service gracefully (the leader hands over); the end of stdin ends
//! the process, so nodes do not outlive a killed test. Methods: `work` (exclusive, logs
//! EXEC), `slow` (exclusive, logs EXEC, sleeps `ms` milliseconds, then logs
//! `STILL <call-id> <still leader?>`; with `"crash_on": <instance-id>`, that instance
//! aborts right after logging EXEC), `fail` (exclusive,
//! always fails), `whoami` (exclusive, no side effect) and
//! `status` (any instance).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use aegis_sdk::{
    Client, ConnectOptions, FailoverPolicy, HandlerError, LeadershipEvent, RpcContext, Service,
};
use serde_json::{json, Value};
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, service, instance, policy] = args.as_slice() else {
        eprintln!("usage: aegis-election-node <nats-url> <service> <instance-id> <policy>");
        std::process::exit(2);
    };
    let policy = match policy.as_str() {
        "aggressive" => FailoverPolicy::aggressive(),
        "balanced" => FailoverPolicy::balanced(),
        "conservative" => FailoverPolicy::conservative(),
        other => return Err(format!("unknown policy {other}").into()),
    };
    let mut terminate = signal(SignalKind::terminate())?;
    // The parent holds our stdin: when it goes away (even killed), so do we.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });

    let client = Client::connect(&ConnectOptions::new(url)).await?;
    let service = Service::builder(service.as_str())
        .instance_id(instance.as_str())
        .single_active("default", policy)
        .exclusive_rpc("work", |ctx: RpcContext, params: Value| async move {
            let token = ctx.fencing_token().unwrap_or_default();
            let call = params["call_id"].as_str().unwrap_or("-").to_owned();
            println!("EXEC {call} {token}");
            Ok::<_, HandlerError>(json!({
                "instance": ctx.instance_id().as_str(),
                "token": token,
                "call_id": call,
            }))
        })
        .exclusive_rpc("slow", |ctx: RpcContext, params: Value| async move {
            let token = ctx.fencing_token().unwrap_or_default();
            let call = params["call_id"].as_str().unwrap_or("-").to_owned();
            println!("EXEC {call} {token}");
            // A crash the moment the call started: no clean-up, nothing more sent.
            if params["crash_on"].as_str() == Some(ctx.instance_id().as_str()) {
                std::process::abort();
            }
            let ms = params["ms"].as_u64().unwrap_or(0);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            println!("STILL {call} {}", ctx.still_leader());
            Ok::<_, HandlerError>(json!({
                "instance": ctx.instance_id().as_str(),
                "token": token,
                "call_id": call,
            }))
        })
        .exclusive_rpc("fail", |_ctx: RpcContext, _params: Value| async move {
            println!("FAIL");
            Err::<Value, _>(HandlerError::msg("deliberate failure"))
        })
        .exclusive_rpc("whoami", |ctx: RpcContext, _params: Value| async move {
            Ok::<_, HandlerError>(json!({
                "instance": ctx.instance_id().as_str(),
                "token": ctx.fencing_token().unwrap_or_default(),
            }))
        })
        .rpc("status", |ctx: RpcContext, _params: Value| async move {
            Ok::<_, HandlerError>(json!({"instance": ctx.instance_id().as_str()}))
        })
        .build()?;

    let leadership = service.leadership().cloned().ok_or("no leadership")?;
    let mut events = leadership.events();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            match event {
                LeadershipEvent::Elected { token } => println!("ELECTED {token}"),
                LeadershipEvent::Lost { token, reason } => println!("LOST {token} {reason:?}"),
                _ => {}
            }
        }
    });

    service.start(&client).await?;
    println!("READY");
    terminate.recv().await;
    service.stop().await?;
    println!("STOPPED");
    Ok(())
}
