//! `aegis`: the command line of aegis-sdk.
//!
//! Runs a local NATS server, calls services, and runs the demo that shows the SDK end to
//! end. Every subcommand takes `--server` (default `NATS_URL`, then
//! `nats://127.0.0.1:4222`) and `--json` for output that scripts can parse.

// A command-line program talks to people on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod commands;
mod local_server;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Options every subcommand shares.
#[derive(Debug, Clone, clap::Args)]
struct Global {
    /// NATS server URL(s), comma-separated.
    /// Default: `nats://127.0.0.1:4222`.
    #[arg(long, global = true, env = "NATS_URL")]
    server: Option<String>,
    /// User for user/password authentication.
    #[arg(long, global = true, env = "NATS_USER")]
    user: Option<String>,
    /// Password for user/password authentication.
    #[arg(long, global = true, env = "NATS_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Token authentication.
    #[arg(long, global = true, env = "NATS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Credentials file.
    #[arg(long, global = true, env = "NATS_CREDS")]
    creds: Option<std::path::PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
}

impl Global {
    /// The server URL(s): `--server`, `NATS_URL`, or the local default.
    fn url(&self) -> String {
        self.server
            .clone()
            .unwrap_or_else(|| aegis_sdk::adapters::nats::options::DEFAULT_URL.to_owned())
    }

    fn connect_options(&self) -> aegis_sdk::ConnectOptions {
        let mut options = aegis_sdk::ConnectOptions::new(self.url()).name("aegis-cli");
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user, password);
        }
        if let Some(token) = &self.token {
            options = options.token(token);
        }
        options.credentials_file = self.creds.clone();
        options.connect_timeout = Some(std::time::Duration::from_secs(3));
        options.reconnect.max_attempts = Some(3);
        options
    }

    async fn connect(&self) -> Result<aegis_sdk::Client, aegis_sdk::Error> {
        aegis_sdk::Client::connect(&self.connect_options()).await
    }
}

/// aegis: microservice IPC over NATS (RPC, events, commands, KV, discovery, leaders).
#[derive(Debug, Parser)]
#[command(name = "aegis", version, about)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a local nats-server with JetStream until Ctrl-C.
    Server(commands::server::Args),
    /// Call an RPC method and print its result.
    Call(commands::call::Args),
    /// Run the demo: a local server, services, calls, and a report.
    Demo(commands::demo::Args),
    /// One single-active node of the demo (started by `aegis demo`).
    #[command(hide = true)]
    DemoNode(commands::demo::NodeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => commands::server::run(&cli.global, args).await,
            Command::Call(args) => commands::call::run(&cli.global, args).await,
            Command::Demo(args) => commands::demo::run(&cli.global, args).await,
            Command::DemoNode(args) => commands::demo::node(&cli.global, args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
