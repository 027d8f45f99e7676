//! Errors of the command line, each printed as one line.

use std::fmt;

/// A failure to report to the user as one line, then exit non-zero.
#[derive(Debug)]
pub(crate) struct CliError(pub(crate) String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<aegis_sdk::Error> for CliError {
    fn from(error: aegis_sdk::Error) -> Self {
        CliError(format!("{} ({})", error.message(), error.kind()))
    }
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        CliError(error.to_string())
    }
}

pub(crate) type CliResult<T = ()> = Result<T, CliError>;
