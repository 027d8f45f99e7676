//! Shared helpers for the runnable examples in this folder.

/// Installs a `tracing` subscriber that honours `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

/// What an example's body returns.
pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Ends an example: exit 0, or its error as one line on stderr, `error: ...` in its
/// `Display` form (not the `Debug` form that `main` returning an error prints), and
/// exit 1.
pub fn finish(result: Result) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("error: {error}\n").as_bytes(),
            );
            std::process::ExitCode::FAILURE
        }
    }
}

/// `NATS_URL`, or `nats://127.0.0.1:4222`.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}
