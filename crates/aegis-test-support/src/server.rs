//! A single `nats-server` child process.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::binary::{nats_server_binary, release_port, reserve_port, unique_name};
use crate::http;

/// How long a single server may take to become ready.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How often readiness is polled.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How many times a first start is tried with fresh ports when a port was taken.
pub(crate) const START_ATTEMPTS: usize = 5;
/// nats-server's default `max_pending`; `max_payload` may not exceed `max_pending`.
const DEFAULT_MAX_PENDING: usize = 64 * 1024 * 1024;

/// Options for a [`NatsServer`]; made by [`NatsServer::builder`].
#[derive(Debug, Clone)]
pub struct NatsServerBuilder {
    max_payload: Option<usize>,
    jetstream: bool,
    config_extra: String,
}

impl Default for NatsServerBuilder {
    fn default() -> Self {
        Self {
            max_payload: None,
            jetstream: true,
            config_extra: String::new(),
        }
    }
}

impl NatsServerBuilder {
    /// Sets the server's `max_payload` (largest message payload, in bytes). If it is above
    /// nats-server's default `max_pending` (64 MiB), `max_pending` is raised to match.
    #[must_use]
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = Some(bytes);
        self
    }

    /// Enables or disables JetStream (enabled by default).
    #[must_use]
    pub fn jetstream(mut self, enabled: bool) -> Self {
        self.jetstream = enabled;
        self
    }

    /// Appends raw lines to the generated configuration file (e.g. `"max_connections: 10"`
    /// or an `accounts { ... }` block). May be called more than once. Do not repeat
    /// `listen`, `http`, `server_name`, `log_file` or the `jetstream` block: those are
    /// generated (turn JetStream off with [`jetstream(false)`](Self::jetstream) to supply
    /// your own `jetstream` block).
    #[must_use]
    pub fn config_extra(mut self, lines: &str) -> Self {
        self.config_extra.push_str(lines);
        if !self.config_extra.ends_with('\n') {
            self.config_extra.push('\n');
        }
        self
    }

    /// Starts the server on free loopback ports and waits until it is ready.
    ///
    /// # Panics
    ///
    /// Panics if the server does not become ready within 10 s, with the server's
    /// configuration and the tail of its log in the message.
    pub fn start(self) -> NatsServer {
        for attempt in 1..=START_ATTEMPTS {
            let spec = Spec {
                name: unique_name("aegis-test"),
                port: reserve_port(),
                monitor_port: reserve_port(),
                jetstream: self.jetstream,
                max_payload: self.max_payload,
                extra: self.config_extra.clone(),
                cluster: None,
            };
            let mut server = NatsServer::prepare(spec);
            server.spawn();
            match server.wait_ready(START_TIMEOUT, server.health_path()) {
                Ok(()) => return server,
                Err(failure) if failure.port_in_use && attempt < START_ATTEMPTS => {
                    tracing::debug!(
                        attempt,
                        "nats-server port was taken, retrying with new ports"
                    );
                }
                Err(failure) => panic!("{}", server.report(&failure)),
            }
        }
        unreachable!("the last start attempt either returns or panics")
    }
}

/// Cluster part of a server's configuration.
#[derive(Debug, Clone)]
pub(crate) struct ClusterSpec {
    /// Cluster name, shared by all nodes.
    pub(crate) name: String,
    /// This node's route port.
    pub(crate) port: u16,
    /// The other nodes' route ports.
    pub(crate) routes: Vec<u16>,
}

/// Everything needed to (re)generate a server's configuration.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) monitor_port: u16,
    pub(crate) jetstream: bool,
    pub(crate) max_payload: Option<usize>,
    pub(crate) extra: String,
    pub(crate) cluster: Option<ClusterSpec>,
}

/// Why a server did not become ready.
#[derive(Debug)]
pub(crate) struct StartFailure {
    /// What happened, for the panic message.
    pub(crate) reason: String,
    /// The server exited because one of its ports was in use.
    pub(crate) port_in_use: bool,
}

/// A running child process plus its watchdog.
#[derive(Debug)]
struct Running {
    child: Child,
    watchdog: Option<Child>,
    /// Length of the log file when this process was started (only its part is shown).
    log_offset: u64,
    /// Length of the stderr file when this process was started.
    stderr_offset: u64,
}

/// A `nats-server` child process on free loopback ports, with JetStream (by default)
/// storing into a fresh temporary directory.
///
/// The server is killed and its temporary directory removed when the value is dropped.
#[derive(Debug)]
pub struct NatsServer {
    spec: Spec,
    store_dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    stderr_path: PathBuf,
    process: Mutex<Option<Running>>,
    /// Declared last: removed after the process has been killed in `Drop`.
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts `nats-server` with JetStream on a free loopback port, with its store in a
    /// fresh temporary directory, and waits until it is ready.
    ///
    /// # Panics
    ///
    /// Panics if the server cannot start within 10 s; the message includes the
    /// configuration and the tail of the server's log and stderr.
    pub fn start() -> NatsServer {
        Self::builder().start()
    }

    /// Returns a builder for a server with non-default options.
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.spec.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.spec.port
    }

    /// The HTTP monitoring port.
    pub fn monitor_port(&self) -> u16 {
        self.spec.monitor_port
    }

    /// The HTTP monitoring base URL, `http://127.0.0.1:MPORT`.
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.spec.monitor_port)
    }

    /// GETs `path` (e.g. `"/varz"`, `"/connz"`, `"/jsz?streams=true"`) from the monitoring
    /// port and returns the body. A status other than 200 is an error.
    pub fn monitor_get(&self, path: &str) -> io::Result<String> {
        let (status, body) = http::get(self.spec.monitor_port, path)?;
        if status == 200 {
            Ok(body)
        } else {
            Err(io::Error::other(format!(
                "GET {path} answered {status}: {}",
                body.trim()
            )))
        }
    }

    /// The server's unique `server_name`.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The JetStream store directory (inside the server's temporary directory). Kept
    /// across [`stop`](Self::stop) / [`start_again`](Self::start_again).
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The server's temporary directory (configuration, log, store).
    pub fn temp_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file (appended to across restarts).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The process id, or `None` while the server is not running.
    pub fn pid(&self) -> Option<u32> {
        let mut process = self.process();
        let running = process.as_mut()?;
        match running.child.try_wait() {
            Ok(None) => Some(running.child.id()),
            _ => None,
        }
    }

    /// Whether the server process is alive.
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// Kills the server (SIGKILL) and waits for it to exit. The port stays reserved and
    /// the store directory is kept, for [`start_again`](Self::start_again). Does nothing
    /// if the server is not running.
    pub fn stop(&mut self) {
        let running = self.process_mut().take();
        if let Some(running) = running {
            terminate(running);
            tracing::debug!(name = %self.spec.name, port = self.spec.port, "nats-server stopped");
        }
    }

    /// Starts the server again on the same ports with the same store directory, and waits
    /// until it is ready. Does nothing if it is running.
    ///
    /// # Panics
    ///
    /// Panics if the server does not become ready within 10 s (for example because
    /// another process took its port meanwhile).
    pub fn start_again(&mut self) {
        if self.is_running() {
            return;
        }
        // Reap a process that died on its own.
        self.stop();
        self.spawn();
        if let Err(failure) = self.wait_ready(START_TIMEOUT, self.health_path()) {
            panic!("{}", self.report(&failure));
        }
    }

    /// [`stop`](Self::stop), then [`start_again`](Self::start_again).
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Creates the temporary directory and the configuration file; does not start.
    pub(crate) fn prepare(spec: Spec) -> NatsServer {
        let dir = tempfile::Builder::new()
            .prefix("aegis-nats-")
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot create a temp dir for nats-server: {err}"));
        let store_dir = dir.path().join("store");
        let config_path = dir.path().join("nats-server.conf");
        let log_path = dir.path().join("nats-server.log");
        let stderr_path = dir.path().join("nats-server.stderr");
        let server = NatsServer {
            spec,
            store_dir,
            config_path,
            log_path,
            stderr_path,
            process: Mutex::new(None),
            dir,
        };
        fs::create_dir_all(&server.store_dir)
            .and_then(|()| fs::write(&server.config_path, server.render_config()))
            .unwrap_or_else(|err| {
                panic!(
                    "cannot write nats-server config in {}: {err}",
                    server.dir.path().display()
                )
            });
        server
    }

    fn render_config(&self) -> String {
        let spec = &self.spec;
        let mut config = String::new();
        let mut line = |text: String| {
            config.push_str(&text);
            config.push('\n');
        };
        line(format!("server_name: {}", quote(&spec.name)));
        line(format!("listen: \"127.0.0.1:{}\"", spec.port));
        line(format!("http: \"127.0.0.1:{}\"", spec.monitor_port));
        line(format!("log_file: {}", quote_path(&self.log_path)));
        if let Some(max_payload) = spec.max_payload {
            line(format!("max_payload: {max_payload}"));
            if max_payload > DEFAULT_MAX_PENDING {
                line(format!("max_pending: {max_payload}"));
            }
        }
        if spec.jetstream {
            line("jetstream {".to_owned());
            line(format!("  store_dir: {}", quote_path(&self.store_dir)));
            line("}".to_owned());
        }
        if let Some(cluster) = &spec.cluster {
            line("cluster {".to_owned());
            line(format!("  name: {}", quote(&cluster.name)));
            line(format!("  listen: \"127.0.0.1:{}\"", cluster.port));
            line("  routes: [".to_owned());
            for route in &cluster.routes {
                line(format!("    \"nats-route://127.0.0.1:{route}\""));
            }
            line("  ]".to_owned());
            line("}".to_owned());
        }
        config.push_str(&spec.extra);
        config
    }

    /// Starts the process (and its watchdog) without waiting for readiness.
    pub(crate) fn spawn(&mut self) {
        let log_offset = file_len(&self.log_path);
        let stderr_offset = file_len(&self.stderr_path);
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .unwrap_or_else(|err| {
                panic!("cannot open {}: {err}", self.stderr_path.display());
            });
        let binary = nats_server_binary();
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot spawn {}: {err}", binary.display()));
        let watchdog = spawn_watchdog(child.id(), self.dir.path());
        *self.process_mut() = Some(Running {
            child,
            watchdog,
            log_offset,
            stderr_offset,
        });
    }

    /// The `/healthz` query that tells this server is ready on its own.
    pub(crate) fn health_path(&self) -> &'static str {
        if self.spec.jetstream {
            "/healthz?js-enabled-only=true"
        } else {
            "/healthz"
        }
    }

    /// Polls until the server answers `health_path` with ok, is ours and accepts clients.
    pub(crate) fn wait_ready(
        &self,
        timeout: Duration,
        health_path: &str,
    ) -> Result<(), StartFailure> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                let output = self.output_tail(usize::MAX);
                return Err(StartFailure {
                    reason: format!("nats-server exited during startup ({status})"),
                    port_in_use: output.contains("address already in use"),
                });
            }
            if self.probe(health_path) {
                tracing::debug!(
                    name = %self.spec.name,
                    port = self.spec.port,
                    elapsed_ms = started.elapsed().as_millis(),
                    "nats-server ready"
                );
                return Ok(());
            }
            if started.elapsed() > timeout {
                let last = match http::get(self.spec.monitor_port, health_path) {
                    Ok((status, body)) => format!("{status} {}", body.trim()),
                    Err(err) => err.to_string(),
                };
                return Err(StartFailure {
                    reason: format!(
                        "nats-server did not become ready within {timeout:?} (last GET {health_path}: {last})"
                    ),
                    port_in_use: false,
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn probe(&self, health_path: &str) -> bool {
        let healthy = matches!(
            http::get(self.spec.monitor_port, health_path),
            Ok((200, body)) if body.contains("\"ok\"")
        );
        if !healthy {
            return false;
        }
        // Make sure the monitoring port is really ours, not another server's.
        let ours = matches!(
            http::get(self.spec.monitor_port, "/varz"),
            Ok((200, body)) if http::json_str(&body, "server_name").as_deref() == Some(&*self.spec.name)
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], self.spec.port));
        ours && TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
    }

    /// The exit status if the process has exited (`None` while running or never started).
    fn exit_status(&self) -> Option<ExitStatus> {
        let mut process = self.process();
        process.as_mut()?.child.try_wait().ok().flatten()
    }

    /// The last `lines` lines each of the log and of stderr written by the current process.
    pub(crate) fn output_tail(&self, lines: usize) -> String {
        let (log_offset, stderr_offset) = self.process().as_ref().map_or((0, 0), |running| {
            (running.log_offset, running.stderr_offset)
        });
        format!(
            "--- log tail ({}) ---\n{}--- stderr tail ---\n{}",
            self.log_path.display(),
            tail(&self.log_path, log_offset, lines),
            tail(&self.stderr_path, stderr_offset, lines),
        )
    }

    /// A panic message for a failed start.
    pub(crate) fn report(&self, failure: &StartFailure) -> String {
        let config = fs::read_to_string(&self.config_path).unwrap_or_default();
        let mut report = String::new();
        let _ = writeln!(
            report,
            "nats-server {} (client port {}, monitoring port {}) failed to start: {}",
            self.spec.name, self.spec.port, self.spec.monitor_port, failure.reason
        );
        let _ = writeln!(report, "binary: {}", nats_server_binary().display());
        let _ = writeln!(report, "--- config ({}) ---", self.config_path.display());
        report.push_str(&config);
        report.push_str(&self.output_tail(40));
        report
    }

    fn process(&self) -> MutexGuard<'_, Option<Running>> {
        self.process.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn process_mut(&mut self) -> &mut Option<Running> {
        self.process
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        release_port(self.spec.port);
        release_port(self.spec.monitor_port);
        if let Some(cluster) = &self.spec.cluster {
            release_port(cluster.port);
        }
        // `self.dir` (the temp dir) is removed when the field is dropped, after this.
    }
}

/// Kills the watchdog (so it cannot act) and then the server, waiting for both.
fn terminate(mut running: Running) {
    if let Some(mut watchdog) = running.watchdog.take() {
        let _ = watchdog.kill();
        let _ = watchdog.wait();
    }
    let _ = running.child.kill();
    let _ = running.child.wait();
}

/// Starts `/bin/sh` reading a pipe from this process: when this process dies without
/// running destructors, the pipe reaches EOF and the watchdog kills the server and
/// removes its temp dir. It ignores SIGINT/SIGHUP/SIGTERM so that a Ctrl-C to the whole
/// process group still ends in that cleanup. Killed (with SIGKILL) on a normal stop.
#[cfg(unix)]
fn spawn_watchdog(pid: u32, dir: &Path) -> Option<Child> {
    const SCRIPT: &str = "trap '' INT HUP TERM; read -r _line; kill -9 \"$1\" 2>/dev/null; sleep 1; rm -rf -- \"$2\"";
    Command::new("/bin/sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("aegis-nats-watchdog")
        .arg(pid.to_string())
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| tracing::warn!("cannot start the nats-server watchdog: {err}"))
        .ok()
}

#[cfg(not(unix))]
fn spawn_watchdog(_pid: u32, _dir: &Path) -> Option<Child> {
    None
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |meta| meta.len())
}

/// The last `lines` lines of `path` from byte `offset` on.
fn tail(path: &Path, offset: u64, lines: usize) -> String {
    let mut text = Vec::new();
    let read = File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(offset))?;
        file.read_to_end(&mut text)
    });
    if let Err(err) = read {
        return format!("(cannot read {}: {err})\n", path.display());
    }
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for line in &all[all.len().saturating_sub(lines)..] {
        out.push_str(line);
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("(empty)\n");
    }
    out
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn quote_path(path: &Path) -> String {
    quote(&path.to_string_lossy())
}
