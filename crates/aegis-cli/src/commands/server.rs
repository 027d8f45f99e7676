//! `aegis server`: a local nats-server with JetStream until Ctrl-C (or SIGTERM, SIGHUP).

use std::path::PathBuf;

use crate::local_server::LocalServer;
use crate::output::{interrupted, CliError, CliResult};
use crate::Global;

/// Arguments of `aegis server`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Port to listen on (0: any free port; the URL printed says which).
    #[arg(long, default_value_t = 4222)]
    port: u16,
    /// Where JetStream keeps its data.
    #[arg(long, default_value = ".aegis/nats")]
    data_dir: PathBuf,
}

pub(crate) async fn run(global: &Global, args: Args) -> CliResult {
    let mut server = LocalServer::start(args.port, Some(&args.data_dir)).await?;
    // Listen for signals before telling anyone the server is up.
    let stop = interrupted();
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
    tokio::select! {
        signal = stop => {
            drop(server);
            if !global.json {
                println!("stopped ({signal})");
            }
            Ok(())
        }
        // The server is gone under us (killed, out of disk, ...): say so and fail.
        reason = server.exited() => Err(CliError::new(reason)),
    }
}
