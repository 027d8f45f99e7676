//! `aegis`: the command line of aegis-sdk.
//!
//! Runs a local NATS server, calls services, publishes and follows events, sends
//! commands, reads and writes KV, shows the registry and leaders, benchmarks, and runs
//! the demo that shows the SDK end to end. Every subcommand takes `--server` (default
//! `NATS_URL`, then `nats://127.0.0.1:4222`), the connection credentials, and `--json`
//! for output that scripts can parse.
//!
//! Errors print one line on stderr: `error: ...`, or with `--json` one JSON object,
//! `{"error":"KIND","message":"..."}`. Exit codes: 0 success, 1 failure, 2 usage (bad
//! arguments, invalid names, bad JSON).

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
    /// Credentials file (JWT and NKey seed).
    #[arg(long, global = true, env = "NATS_CREDS")]
    creds: Option<std::path::PathBuf>,
    /// NKey seed authentication (`SU...`).
    #[arg(long, global = true, env = "NATS_NKEY_SEED", hide_env_values = true)]
    nkey: Option<String>,
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

    /// The connection options, checked before any connection is tried; they fail fast
    /// (3 s to connect) rather than retry for long.
    ///
    /// # Errors
    /// A usage error for an empty or malformed `--server`, a user without a password or
    /// the other way round, two ways to authenticate, or an invalid NKey seed.
    fn connect_options(&self) -> output::CliResult<aegis_sdk::ConnectOptions> {
        if let Some(server) = &self.server {
            if server.split(',').all(|url| url.trim().is_empty()) {
                return Err(output::CliError::usage(
                    "--server (NATS_URL) is empty: give a URL such as nats://127.0.0.1:4222",
                ));
            }
        }
        let mut options = aegis_sdk::ConnectOptions::new(self.url()).name("aegis-cli");
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => options = options.user_and_password(user, password),
            (None, None) => {}
            _ => {
                return Err(output::CliError::usage(
                    "--user and --password (NATS_USER, NATS_PASSWORD) go together",
                ))
            }
        }
        if let Some(token) = &self.token {
            options = options.token(token);
        }
        options.credentials_file = self.creds.clone();
        options.nkey_seed = self.nkey.clone();
        options.connect_timeout = Some(std::time::Duration::from_secs(3));
        options.reconnect.max_attempts = Some(3);
        let ways = [
            self.user.is_some().then_some("--user/--password"),
            self.token.as_ref().map(|_| "--token"),
            self.nkey.as_ref().map(|_| "--nkey"),
            self.creds.as_ref().map(|_| "--creds"),
        ];
        let given: Vec<&str> = ways.into_iter().flatten().collect();
        if given.len() > 1 {
            return Err(output::CliError::usage(format!(
                "{} do not go together: authenticate one way (or set NATS_USER, \
                 NATS_TOKEN, NATS_NKEY_SEED, NATS_CREDS for one only)",
                given.join(" and ")
            )));
        }
        // Malformed URLs and invalid seeds are usage errors, found before connecting.
        options.validate()?;
        Ok(options)
    }

    async fn connect(&self) -> output::CliResult<aegis_sdk::Client> {
        Ok(aegis_sdk::Client::connect(&self.connect_options()?).await?)
    }

    /// Connects, and checks that the server has JetStream for this account: events,
    /// commands, KV, the registry and elections all live in it, and without it each
    /// would fail in its own way (no responders, a timeout, an empty listing).
    ///
    /// # Errors
    /// As [`Global::connect`]; a failure saying that JetStream is not enabled.
    async fn connect_jetstream(&self) -> output::CliResult<aegis_sdk::Client> {
        let client = self.connect().await?;
        check_jetstream(&client, &self.url()).await?;
        Ok(client)
    }
}

/// Asks the JetStream API for the account's info: no responders (JetStream off on the
/// server) or error 503 (off for this account) mean no JetStream.
async fn check_jetstream(client: &aegis_sdk::Client, url: &str) -> output::CliResult {
    use aegis_sdk::ErrorKind;
    let shown: Vec<String> = url
        .split(',')
        .map(|u| aegis_sdk::adapters::nats::options::redact_url(u.trim()))
        .collect();
    let not_enabled = |detail: &str| {
        output::CliError::new(format!(
            "JetStream is not enabled on the server at {} ({detail}); events, commands, \
             KV and the registry need it: start nats-server with -js (aegis server does)",
            shown.join(",")
        ))
        .kind("jetstream_not_enabled")
    };
    let reply = client
        .transport()
        .request(
            "$JS.API.INFO".to_owned(),
            aegis_sdk::ports::Headers::new(),
            bytes::Bytes::new(),
            std::time::Duration::from_secs(3),
        )
        .await;
    match reply {
        Ok(reply) => {
            let info: serde_json::Value =
                serde_json::from_slice(&reply.payload).unwrap_or_default();
            match info["error"]["code"].as_u64() {
                Some(503) => Err(not_enabled("not for this account")),
                _ => Ok(()),
            }
        }
        Err(error) if error.kind() == ErrorKind::NoResponders => {
            Err(not_enabled("nothing answers $JS.API"))
        }
        Err(error) => Err(error.into()),
    }
}

/// aegis: microservice IPC over NATS (RPC, events, commands, KV, discovery, leaders).
#[derive(Debug, Parser)]
#[command(
    name = "aegis",
    version,
    about,
    after_help = "Exit status: 0 success, 1 failure, 2 usage (bad arguments, names or JSON)."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a local nats-server with JetStream until Ctrl-C (or SIGTERM, SIGHUP).
    Server(commands::server::Args),
    /// Call an RPC method and print its result.
    Call(commands::call::Args),
    /// List registered service instances (optionally live).
    Services(commands::services::Args),
    /// Publish an event to `events.DOMAIN.TYPE`.
    Publish(commands::publish::Args),
    /// Print events matching a pattern as they arrive.
    Subscribe(commands::subscribe::Args),
    /// Send, inspect or cancel long-running commands.
    #[command(subcommand)]
    Command(commands::command::Command),
    /// Read and write a KV bucket.
    #[command(subcommand)]
    Kv(commands::kv::Command),
    /// Show the leader of a single-active service.
    Leader(commands::leader::Args),
    /// Measure latency and throughput, the SDK beside raw async-nats.
    Bench(commands::bench::Args),
    /// Run the demo: a local server, services, calls, and a report.
    Demo(commands::demo::Args),
    /// One single-active node of the demo (started by `aegis demo`).
    #[command(hide = true)]
    DemoNode(commands::demo::NodeArgs),
}

fn main() -> ExitCode {
    // Before parsing: clap's own errors must know how to print too.
    let json = std::env::args_os().skip(1).any(|arg| arg == "--json");
    output::install_panic_hook(json);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error, json),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // Failures are reported in one line of our own; the SDK's and async-nats' log
        // lines about them would only repeat it. `RUST_LOG=warn` (or finer) shows them.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,async_nats=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();

    // Benchmarks share two cores with nats-server: one runtime thread measures best.
    let runtime = match cli.command {
        Command::Bench(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            let error = output::CliError::new(format!("cannot start the runtime: {error}"));
            eprintln!("{}", error.line(cli.global.json));
            return ExitCode::FAILURE;
        }
    };
    let Cli { global, command } = cli;
    let global = &global;
    let result = runtime.block_on(async {
        match command {
            Command::Server(args) => commands::server::run(global, args).await,
            Command::Call(args) => commands::call::run(global, args).await,
            Command::Services(args) => commands::services::run(global, args).await,
            Command::Publish(args) => commands::publish::run(global, args).await,
            Command::Subscribe(args) => commands::subscribe::run(global, args).await,
            Command::Command(command) => commands::command::run(global, command).await,
            Command::Kv(command) => commands::kv::run(global, command).await,
            Command::Leader(args) => commands::leader::run(global, args).await,
            Command::Bench(args) => commands::bench::run(global, args).await,
            Command::Demo(args) => commands::demo::run(global, args).await,
            Command::DemoNode(args) => commands::demo::node(global, args).await,
        }
    });
    // Background tasks (watches, reconnects) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", error.line(global.json));
            ExitCode::from(error.code())
        }
    }
}

/// Help and version go to stdout as clap prints them; any other parse error becomes one
/// line on stderr (a JSON object with `--json`) and exit code 2.
fn usage_error(error: clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            ExitCode::from(output::EXIT_USAGE)
        }
        _ => {
            // clap's text is "error: what\n  details\n\nUsage: ...\n\nFor more...".
            let text = error.render().to_string();
            let what = text.split("\n\nUsage:").next().unwrap_or(&text);
            // Some errors end in clap's own pointer to --help: ours follows.
            let what = what
                .split("\n\nFor more information")
                .next()
                .unwrap_or(what);
            let what = what.trim_start_matches("error:");
            let line: Vec<&str> = what.split_whitespace().collect();
            let error = output::CliError::usage(format!("{} (see --help)", line.join(" ")));
            eprintln!("{}", error.line(json));
            ExitCode::from(output::EXIT_USAGE)
        }
    }
}
