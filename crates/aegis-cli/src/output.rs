//! What the command line shows: one-line errors with their exit codes, tables, JSON, and
//! the parsers for argument values that clap checks for us.

use std::fmt;
use std::time::Duration;

use aegis_sdk::ErrorKind;
use serde_json::Value;

/// Exit code of a failure: the work could not be done.
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit code of a usage error: bad arguments, invalid names, bad JSON.
pub(crate) const EXIT_USAGE: u8 = 2;

/// A failure to report to the user as one line, then exit with its code.
///
/// In text the line is `error: MESSAGE` (with the SDK's error kind in front for SDK
/// errors, as in `error: timeout: no reply ...`); with `--json` it is one JSON object,
/// `{"error":"KIND","message":"MESSAGE"}`.
#[derive(Debug)]
pub(crate) struct CliError {
    /// What went wrong, one word in snake case: the SDK's [`ErrorKind`] names, `usage`
    /// for bad arguments, `failure` for the rest, or something more precise such as
    /// `not_found`.
    kind: String,
    message: String,
    /// Whether the text form starts with the kind (SDK errors).
    kind_in_text: bool,
    code: u8,
}

impl CliError {
    /// A failure of the work itself (exit 1).
    pub(crate) fn new(message: impl Into<String>) -> Self {
        CliError {
            kind: "failure".to_owned(),
            message: message.into(),
            kind_in_text: false,
            code: EXIT_FAILURE,
        }
    }

    /// A bad argument (exit 2).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        CliError {
            kind: "usage".to_owned(),
            message: message.into(),
            kind_in_text: false,
            code: EXIT_USAGE,
        }
    }

    /// The same error with the kind `kind` for JSON.
    pub(crate) fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// Work cut short by `signal`: everything it started is stopped; the exit code is
    /// the signal's (128 + its number).
    pub(crate) fn stopped_by(signal: Signal, what: &str) -> Self {
        CliError {
            kind: "interrupted".to_owned(),
            message: format!("{what} stopped by {signal}; everything it started is stopped"),
            kind_in_text: false,
            code: signal.exit_code(),
        }
    }

    /// A failure of `kind` worded as `message`: names and arguments the SDK refuses are
    /// usage errors, everything else a failure.
    pub(crate) fn for_kind(kind: ErrorKind, message: impl Into<String>) -> Self {
        let code = match kind {
            ErrorKind::InvalidName | ErrorKind::InvalidArgument => EXIT_USAGE,
            _ => EXIT_FAILURE,
        };
        CliError {
            kind: kind.as_str().to_owned(),
            message: message.into(),
            kind_in_text: true,
            code,
        }
    }

    /// The process exit code for this error.
    pub(crate) fn code(&self) -> u8 {
        self.code
    }

    /// The message on one line, whatever it holds.
    fn one_line(&self) -> String {
        let lines: Vec<&str> = self
            .message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        lines.join(" ")
    }

    /// The line to print on stderr: text, or a JSON object for `--json`.
    pub(crate) fn line(&self, json: bool) -> String {
        if json {
            serde_json::json!({"error": self.kind, "message": self.one_line()}).to_string()
        } else {
            format!("error: {self}")
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind_in_text {
            write!(f, "{}: ", self.kind)?;
        }
        f.write_str(&self.one_line())
    }
}

impl From<aegis_sdk::Error> for CliError {
    /// `kind: message`; names and arguments the SDK refuses are usage errors.
    fn from(error: aegis_sdk::Error) -> Self {
        CliError::for_kind(error.kind(), error.message())
    }
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        CliError::new(error.to_string())
    }
}

pub(crate) type CliResult<T = ()> = Result<T, CliError>;

/// Exit code when stdout was closed under us (`aegis kv ls b | head -1`): what a shell
/// reports for a process ended by SIGPIPE.
pub(crate) const EXIT_BROKEN_PIPE: u8 = 141;

/// Replaces panic traces by one line on stderr (a JSON object when `json`). A closed
/// stdout (the reader of a pipe went away) is not an error at all: the process just
/// ends, quietly.
pub(crate) fn install_panic_hook(json: bool) {
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        if message.contains("Broken pipe") {
            std::process::exit(i32::from(EXIT_BROKEN_PIPE));
        }
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let error = CliError::new(format!("internal error: {message}{location}")).kind("internal");
        // Written by hand: a failing eprintln! inside a panic hook would abort.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("{}\n", error.line(json)).as_bytes(),
        );
    }));
}

/// Parses `text` as a JSON object; no text is `{}`. `what` names the argument.
pub(crate) fn json_object(text: Option<&str>, what: &str) -> CliResult<Value> {
    let value: Value = match text {
        None => return Ok(Value::Object(Default::default())),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| CliError::usage(format!("{what}: not valid JSON: {e}")))?,
    };
    if !value.is_object() {
        return Err(CliError::usage(format!("{what} must be a JSON object")));
    }
    Ok(value)
}

/// A clap value parser: a positive number of seconds (`0.5`, `30`).
pub(crate) fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err("must be a positive number of seconds".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// A clap value parser: a whole number, at least 1.
pub(crate) fn positive(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a whole number")),
    }
}

/// Prints one JSON document on one line.
pub(crate) fn print_json(value: &Value) {
    println!("{value}");
}

/// `value` as text for people: strings as they are, everything else as JSON.
pub(crate) fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// A text table: a header row and rows, each column as wide as its widest cell.
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Table {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as lines, columns two spaces apart, no trailing blanks.
    pub(crate) fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = widths[c].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Whether stdout is a terminal (bars, colours and redraws only then).
pub(crate) fn stdout_is_terminal() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdout())
}

/// How long a streaming subcommand (`subscribe`, `kv watch`, `services --watch`) runs:
/// until Ctrl-C, `--count` items, or `--for` seconds, whichever comes first.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Limits {
    /// Stop after this many items (at least 1).
    #[arg(long, value_parser = positive)]
    pub(crate) count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long = "for", value_name = "SECONDS", value_parser = seconds)]
    pub(crate) duration: Option<Duration>,
}

impl Limits {
    /// Whether `seen` items are enough.
    pub(crate) fn reached(&self, seen: u64) -> bool {
        self.count.is_some_and(|count| seen >= count)
    }

    /// Resolves on Ctrl-C (or SIGTERM, SIGHUP) or when `--for` has passed; never
    /// otherwise. The signal handlers are in place from this call on, not from the
    /// first poll.
    pub(crate) fn stopped(&self) -> impl std::future::Future<Output = ()> + use<> {
        let interrupt = interrupted();
        let duration = self.duration;
        async move {
            let deadline = async {
                match duration {
                    Some(duration) => tokio::time::sleep(duration).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = interrupt => {}
                _ = deadline => {}
            }
        }
    }
}

/// Resolves on Ctrl-C (SIGINT), SIGTERM or SIGHUP, with the signal's name. The handlers
/// are installed when this is called, so a signal that comes right after (say, once a
/// readiness line is printed) is not lost to the default action, which would kill the
/// process without any cleanup.
pub(crate) fn interrupted() -> impl std::future::Future<Output = Signal> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        let hangup = signal(SignalKind::hangup()).ok();
        async move {
            async fn next(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = next(interrupt) => Signal::Interrupt,
                _ = next(terminate) => Signal::Terminate,
                _ = next(hangup) => Signal::Hangup,
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Interrupt
        }
    }
}

/// A signal asking the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGHUP (the terminal went away).
    Hangup,
}

impl Signal {
    /// The exit code of a process that stops for this signal without finishing its
    /// work: 128 plus the signal's number, as shells report it.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Signal::Hangup => 129,
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_one_line_with_their_codes() {
        let error = CliError::new("first\n\n  second  \n");
        assert_eq!(error.to_string(), "first second");
        assert_eq!(error.code(), EXIT_FAILURE);
        let error: CliError = aegis_sdk::Error::new(ErrorKind::InvalidName, "bad").into();
        assert_eq!(error.code(), EXIT_USAGE);
        assert_eq!(error.to_string(), "invalid_name: bad");
        let error: CliError = aegis_sdk::Error::new(ErrorKind::Timeout, "late").into();
        assert_eq!(error.code(), EXIT_FAILURE);
        assert_eq!(error.line(false), "error: timeout: late");
        assert_eq!(error.line(true), r#"{"error":"timeout","message":"late"}"#);
        assert_eq!(
            CliError::usage("bad\nthing").line(true),
            r#"{"error":"usage","message":"bad thing"}"#
        );
    }

    #[test]
    fn json_objects_and_seconds() {
        assert_eq!(json_object(None, "params").unwrap(), serde_json::json!({}));
        assert_eq!(json_object(Some("[1]"), "params").unwrap_err().code(), 2);
        assert_eq!(json_object(Some("{x"), "params").unwrap_err().code(), 2);
        assert_eq!(seconds("0.25").unwrap(), Duration::from_millis(250));
        assert!(seconds("0").is_err());
        assert!(seconds("-1").is_err());
        assert!(seconds("soon").is_err());
        assert_eq!(positive("3"), Ok(3));
        assert_eq!(positive("0"), Err("must be at least 1".to_owned()));
        assert!(positive("-1").is_err());
    }

    #[test]
    fn tables_align_columns() {
        let mut table = Table::new(&["A", "LONG"]);
        table.row(vec!["wide cell".into(), "x".into()]);
        assert_eq!(table.render(), "A          LONG\nwide cell  x\n");
    }
}
