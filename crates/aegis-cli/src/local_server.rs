//! A nats-server child process with JetStream, for `aegis server` and the demo.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::output::{CliError, CliResult};

/// A running nats-server; killed when dropped.
pub(crate) struct LocalServer {
    child: Child,
    port: u16,
    _temp: Option<TempDir>,
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn binary() -> CliResult<PathBuf> {
    if let Some(path) = std::env::var_os("AEGIS_NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            CliError::new("nats-server not found on PATH: run scripts/install-nats-server")
        })
}

/// A free TCP port on loopback.
pub(crate) fn free_port() -> CliResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl LocalServer {
    /// Starts nats-server on `port` with JetStream storing in `data_dir`, or in a
    /// temporary folder removed on drop when `data_dir` is `None`.
    pub(crate) fn start(port: u16, data_dir: Option<&Path>) -> CliResult<LocalServer> {
        let (store, temp) = match data_dir {
            Some(dir) => (dir.to_path_buf(), None),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "aegis-demo-{}-{}",
                    std::process::id(),
                    port
                ));
                (dir.clone(), Some(TempDir(dir)))
            }
        };
        std::fs::create_dir_all(&store)?;
        let child = Command::new(binary()?)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| CliError::new(format!("cannot start nats-server: {e}")))?;
        let mut server = LocalServer {
            child,
            port,
            _temp: temp,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> CliResult<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(CliError::new(format!(
                    "nats-server exited at start ({status}); is port {} in use?",
                    self.port
                )));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(CliError::new("nats-server did not start within 10 s"))
    }

    /// `nats://127.0.0.1:{port}`.
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
