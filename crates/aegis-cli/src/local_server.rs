//! A nats-server child process with JetStream, for `aegis server` and the demo.
//!
//! The server counts as started only once its own log says "Server is ready": a port
//! that answers may belong to another server. Its log (stderr) is read all along, so
//! that a failure, at start or later, is reported with nats-server's own error line.
//!
//! The child dies with this process: it is killed when [`LocalServer`] is dropped
//! (at the end, on an error, or on a signal the subcommand handles) and, where
//! `setpriv` is on PATH, also when this process is killed outright (SIGKILL), through
//! the kernel's parent-death signal.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::output::{CliError, CliResult};

/// How long nats-server may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How many of the server's last log lines are kept to explain a failure.
const KEPT_LINES: usize = 20;

/// A running nats-server; killed when dropped.
pub(crate) struct LocalServer {
    child: Child,
    port: u16,
    log: watch::Receiver<Log>,
    // Dropped after the child is killed (fields drop after `Drop::drop`).
    _temp: Option<TempDir>,
}

/// What the server's log told so far.
#[derive(Debug, Default, Clone)]
struct Log {
    /// The port from "Listening for client connections on HOST:PORT".
    port: Option<u16>,
    /// "Server is ready" was logged.
    ready: bool,
    /// The log ended: the process exited (or closed its stderr).
    ended: bool,
    /// The last lines, without their `[pid] date time` prefix.
    last: VecDeque<String>,
}

impl Log {
    /// The last fatal or error line, without its level.
    fn error_line(&self) -> Option<&str> {
        self.last
            .iter()
            .rev()
            .find_map(|line| line.strip_prefix("[FTL]").or(line.strip_prefix("[ERR]")))
            .map(str::trim)
    }

    /// The line that best explains a failed start: the last error line, else the last.
    fn reason(&self) -> Option<&str> {
        self.error_line()
            .or_else(|| self.last.back().map(String::as_str))
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn binary() -> CliResult<PathBuf> {
    if let Some(path) = std::env::var_os("AEGIS_NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    on_path("nats-server").ok_or_else(|| {
        CliError::new("nats-server not found on PATH: run scripts/install-nats-server")
    })
}

/// `[7415] 2026/12/04 17:13:59.943107 [INF] Server is ready` without the pid and time.
fn strip_prefix(line: &str) -> &str {
    line.find(" [")
        .map(|at| &line[at + 1..])
        .filter(|rest| rest.starts_with('['))
        .unwrap_or(line)
        .trim_end()
}

/// Reads the server's log until it ends, publishing what it learns.
fn read_log(stderr: impl std::io::Read, log: watch::Sender<Log>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let line = strip_prefix(&line).to_owned();
        tracing::debug!(target: "nats_server", "{line}");
        log.send_modify(|log| {
            if let Some(address) = line.strip_prefix("[INF] Listening for client connections on ") {
                log.port = address
                    .rsplit_once(':')
                    .and_then(|(_, port)| port.trim().parse().ok());
            }
            if line == "[INF] Server is ready" {
                log.ready = true;
            }
            if log.last.len() == KEPT_LINES {
                log.last.pop_front();
            }
            log.last.push_back(line);
        });
    }
    log.send_modify(|log| log.ended = true);
}

impl LocalServer {
    /// Starts nats-server on `port` (0: a free port the server picks) with JetStream
    /// storing in `data_dir`, or in a temporary folder removed on drop when `data_dir`
    /// is `None`. Returns once the server itself says it is ready.
    ///
    /// # Errors
    /// When nats-server is missing, exits at start (with its own error line, such as
    /// "address already in use"), or is not ready within 10 s.
    pub(crate) async fn start(port: u16, data_dir: Option<&Path>) -> CliResult<LocalServer> {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let (store, temp) = match data_dir {
            Some(dir) => (dir.to_path_buf(), None),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "aegis-demo-{}-{}",
                    std::process::id(),
                    STARTED.fetch_add(1, Ordering::Relaxed)
                ));
                (dir.clone(), Some(TempDir(dir)))
            }
        };
        std::fs::create_dir_all(&store).map_err(|e| {
            CliError::new(format!(
                "cannot create data folder {}: {e}",
                store.display()
            ))
        })?;
        let server = binary()?;
        // With setpriv the kernel kills the server when this process dies, even by
        // SIGKILL. The signal follows the thread that spawns, so this must run on a
        // thread that lives as long as the process: the runtime's main thread (every
        // subcommand runs there) does.
        let mut command = match on_path("setpriv") {
            Some(setpriv) => {
                let mut command = Command::new(setpriv);
                command.args(["--pdeathsig", "KILL", "--"]).arg(&server);
                command
            }
            None => Command::new(&server),
        };
        // -1: nats-server picks a free port and logs it.
        let port_arg = if port == 0 {
            "-1".to_owned()
        } else {
            port.to_string()
        };
        let mut child = command
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| CliError::new(format!("cannot start {}: {e}", server.display())))?;
        let (sender, log) = watch::channel(Log::default());
        if let Some(stderr) = child.stderr.take() {
            std::thread::spawn(move || read_log(stderr, sender));
        }
        let mut server = LocalServer {
            child,
            port,
            log,
            _temp: temp,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> CliResult<()> {
        let waited = tokio::time::timeout(
            START_TIMEOUT,
            self.log.wait_for(|log| log.ready || log.ended),
        )
        .await
        .map(|waited| waited.map(|log| log.clone()));
        let log = match waited {
            Ok(Ok(log)) => log,
            Ok(Err(_)) => self.log.borrow().clone(),
            Err(_) => {
                return Err(CliError::new(format!(
                    "nats-server did not say it was ready within {}s",
                    START_TIMEOUT.as_secs()
                )))
            }
        };
        if !log.ready || log.ended {
            let status = self.status();
            return Err(CliError::new(format!(
                "nats-server could not start ({status}): {}",
                log.reason().unwrap_or("no output")
            )));
        }
        match log.port {
            Some(port) => self.port = port,
            None => return Err(CliError::new("nats-server did not say its port")),
        }
        Ok(())
    }

    /// The child's exit status if it has exited, waiting a moment for it.
    fn status(&mut self) -> String {
        for _ in 0..50 {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return e.to_string(),
            }
        }
        "still running".to_owned()
    }

    /// Resolves if the server exits, with a message saying why.
    pub(crate) async fn exited(&mut self) -> String {
        // The sender goes only once the log ended, so either way it is complete.
        let _ = self.log.wait_for(|log| log.ended).await;
        let reason = self.log.borrow().error_line().map(str::to_owned);
        let status = self.status();
        match reason {
            Some(reason) => format!("nats-server exited ({status}): {reason}"),
            None => format!("nats-server exited ({status})"),
        }
    }

    /// `nats://127.0.0.1:{port}`, the port the server listens on.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_lose_their_prefix_and_explain_failures() {
        assert_eq!(
            strip_prefix("[7415] 2026/12/04 17:13:59.943107 [INF] Server is ready"),
            "[INF] Server is ready"
        );
        assert_eq!(strip_prefix("plain"), "plain");
        let mut log = Log::default();
        for line in [
            "[INF] Starting nats-server",
            "[FTL] Error listening on port: 127.0.0.1:4222, \"bind: address already in use\"",
            "[INF] after",
        ] {
            log.last.push_back(line.to_owned());
        }
        assert_eq!(log.reason(), log.error_line());
        assert_eq!(
            log.reason(),
            Some("Error listening on port: 127.0.0.1:4222, \"bind: address already in use\"")
        );
    }
}
