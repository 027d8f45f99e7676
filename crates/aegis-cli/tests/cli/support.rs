//! Running the `aegis` binary as a user does, and reading what it prints.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary, with no connection settings inherited from the environment.
pub(crate) fn aegis() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aegis"));
    for name in [
        "NATS_URL",
        "NATS_USER",
        "NATS_PASSWORD",
        "NATS_TOKEN",
        "NATS_CREDS",
        "NATS_NKEY_SEED",
    ] {
        command.env_remove(name);
    }
    command.stdin(Stdio::null());
    command
}

/// What one finished run printed.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) elapsed: Duration,
}

impl Run {
    /// Asserts exit 0 and returns the run.
    #[track_caller]
    pub(crate) fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "failed: {self:#?}");
        self
    }

    /// Stdout as one JSON document.
    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    /// Asserts the exit code and exactly one line on stderr, and returns that line.
    #[track_caller]
    pub(crate) fn error(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "{self:#?}");
        assert_eq!(self.stderr.lines().count(), 1, "not one line: {self:#?}");
        assert!(self.stderr.starts_with("error: "), "{self:#?}");
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
        self.stderr.trim_end()
    }
}

impl Run {
    /// Asserts the exit code and exactly one line on stderr, a JSON object with the
    /// string fields `error` and `message`, and returns it.
    #[track_caller]
    pub(crate) fn json_error(&self, code: i32) -> Value {
        assert_eq!(self.code, Some(code), "{self:#?}");
        assert_eq!(self.stderr.lines().count(), 1, "not one line: {self:#?}");
        let error: Value = serde_json::from_str(self.stderr.trim())
            .unwrap_or_else(|e| panic!("stderr is not JSON ({e}): {self:#?}"));
        assert!(error["error"].is_string(), "{self:#?}");
        assert!(error["message"].is_string(), "{self:#?}");
        assert_eq!(error.as_object().unwrap().len(), 2, "{self:#?}");
        error
    }
}

/// Runs `aegis --server URL ARGS...` to the end.
pub(crate) fn run(url: &str, args: &[&str]) -> Run {
    let mut all = vec!["--server", url];
    all.extend_from_slice(args);
    run_plain(&all)
}

/// Runs `aegis ARGS...` to the end.
pub(crate) fn run_plain(args: &[&str]) -> Run {
    let started = Instant::now();
    let output = aegis().args(args).output().expect("aegis runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// An `aegis` process still running, its output read line by line; killed when dropped.
pub(crate) struct Spawned {
    child: Child,
    /// Kept open for processes that run until their stdin closes.
    _stdin: Option<std::process::ChildStdin>,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

fn lines(from: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

impl Spawned {
    /// Starts `aegis --server URL ARGS...`.
    pub(crate) fn start(url: &str, args: &[&str]) -> Spawned {
        let mut all = vec!["--server", url];
        all.extend_from_slice(args);
        Spawned::start_plain(&all)
    }

    /// Starts `aegis ARGS...`.
    pub(crate) fn start_plain(args: &[&str]) -> Spawned {
        Spawned::spawn(args, false)
    }

    /// Starts `aegis --server URL ARGS...` with a stdin that stays open while this
    /// lives (`demo-node` runs until its stdin closes).
    pub(crate) fn start_with_stdin(url: &str, args: &[&str]) -> Spawned {
        let mut all = vec!["--server", url];
        all.extend_from_slice(args);
        Spawned::spawn(&all, true)
    }

    fn spawn(args: &[&str], stdin: bool) -> Spawned {
        let mut command = aegis();
        if stdin {
            command.stdin(Stdio::piped());
        }
        let mut child = command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("aegis starts");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Spawned {
            _stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        }
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    pub(crate) fn interrupt(&self) {
        self.signal("INT");
    }

    /// Sends the signal `name` (`TERM`, `HUP`, `KILL`...).
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stderr line, waiting up to `timeout`.
    pub(crate) fn next_stderr(&self, timeout: Duration) -> Option<String> {
        self.stderr.recv_timeout(timeout).ok()
    }

    /// The next line on stdout, waiting up to `timeout`.
    pub(crate) fn next_line(&self, timeout: Duration) -> Option<String> {
        self.stdout.recv_timeout(timeout).ok()
    }

    /// Waits for a stderr line containing `text`; panics after `timeout`.
    #[track_caller]
    pub(crate) fn wait_stderr(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(text) => return,
                Ok(_) => {}
                Err(_) => panic!("no stderr line with {text:?} within {timeout:?}"),
            }
        }
    }

    /// Waits for the process to exit by itself; returns its code and the rest of stdout.
    #[track_caller]
    pub(crate) fn finish(mut self, timeout: Duration) -> (Option<i32>, Vec<String>) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread ends with the pipe; collect what it has.
                let mut rest = Vec::new();
                while let Ok(line) = self.stdout.recv_timeout(Duration::from_secs(2)) {
                    rest.push(line);
                }
                return (status.code(), rest);
            }
            assert!(
                Instant::now() < deadline,
                "aegis still running after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether something accepts TCP connections at the `nats://HOST:PORT` URL.
pub(crate) fn listening(url: &str) -> bool {
    let address = url.trim_start_matches("nats://");
    std::net::TcpStream::connect(address).is_ok()
}

/// Polls `check` every 50 ms until it returns `Some`, up to `timeout`.
#[track_caller]
pub(crate) fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
