//! `aegis server`: a local nats-server with JetStream until Ctrl-C.

use std::path::PathBuf;

use crate::local_server::LocalServer;
use crate::output::{interrupted, CliResult};
use crate::Global;

/// Arguments of `aegis server`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Port to listen on.
    #[arg(long, default_value_t = 4222)]
    port: u16,
    /// Where JetStream keeps its data.
    #[arg(long, default_value = ".aegis/nats")]
    data_dir: PathBuf,
}

pub(crate) async fn run(global: &Global, args: Args) -> CliResult {
    let server = LocalServer::start(args.port, Some(&args.data_dir))?;
    // Listen for Ctrl-C before telling anyone the server is up.
    let interrupt = interrupted();
    if global.json {
        println!(
            "{}",
            serde_json::json!({"url": server.url(), "data_dir": args.data_dir})
        );
    } else {
        println!(
            "nats-server running at {} (data in {})",
            server.url(),
            args.data_dir.display()
        );
        println!("Ctrl-C to stop");
    }
    interrupt.await;
    drop(server);
    if !global.json {
        println!("stopped");
    }
    Ok(())
}
