//! How to connect to NATS: servers, credentials, TLS, reconnects. From code or from the
//! environment.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// The default server when nothing else is configured.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// How to reconnect after the connection is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Give up after this many attempts in a row; `None` (the default) never gives up.
    pub max_attempts: Option<usize>,
    /// The first delay between attempts (default 50 ms); it doubles on each failure.
    pub initial_delay: Duration,
    /// The longest delay between attempts (default 2 s).
    pub max_delay: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            max_attempts: None,
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl ReconnectPolicy {
    /// The delay before reconnect attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: usize) -> Duration {
        let shift = attempt.saturating_sub(1).min(20) as u32;
        self.initial_delay
            .saturating_mul(1u32 << shift)
            .min(self.max_delay)
    }
}

/// Options for connecting to NATS.
///
/// Build it in code, or read it from the environment with [`ConnectOptions::from_env`].
/// Credentials are never shown by `Debug`.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// Server URLs, tried in order (default [`DEFAULT_URL`]).
    pub servers: Vec<String>,
    /// The client name shown by the server's monitoring.
    pub name: Option<String>,
    /// User for user/password authentication.
    pub user: Option<String>,
    /// Password for user/password authentication.
    pub password: Option<String>,
    /// Token authentication.
    pub token: Option<String>,
    /// NKey seed authentication (`SU...`).
    pub nkey_seed: Option<String>,
    /// A `.creds` file (JWT and NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// A CA certificate (PEM) to verify the server with.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and key (PEM) for mutual TLS.
    pub tls_client_cert: Option<(PathBuf, PathBuf)>,
    /// Refuse to connect without TLS (default false).
    pub require_tls: bool,
    /// Reconnect policy.
    pub reconnect: ReconnectPolicy,
    /// How long one connection attempt may take (default 5 s when `None`).
    pub connect_timeout: Option<Duration>,
    /// Keep retrying when the first connection fails, instead of failing `connect`
    /// (default false).
    pub retry_on_initial_connect: bool,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn redacted<T>(value: &Option<T>) -> &'static str {
            if value.is_some() {
                "<redacted>"
            } else {
                "None"
            }
        }
        let servers: Vec<String> = self.servers.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("ConnectOptions")
            .field("servers", &servers)
            .field("name", &self.name)
            .field("user", &self.user)
            .field("password", &redacted(&self.password))
            .field("token", &redacted(&self.token))
            .field("nkey_seed", &redacted(&self.nkey_seed))
            .field("credentials_file", &self.credentials_file)
            .field("tls_ca", &self.tls_ca)
            .field("tls_client_cert", &self.tls_client_cert)
            .field("require_tls", &self.require_tls)
            .field("reconnect", &self.reconnect)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry_on_initial_connect", &self.retry_on_initial_connect)
            .finish()
    }
}

impl ConnectOptions {
    /// The default connection timeout.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Options for `servers` (a URL, or several separated by commas).
    pub fn new(servers: impl AsRef<str>) -> Self {
        ConnectOptions {
            servers: split_urls(servers.as_ref()),
            ..ConnectOptions::default()
        }
    }

    /// Reads options from the environment:
    ///
    /// | variable | option |
    /// |---|---|
    /// | `NATS_URL` | servers, comma-separated (default [`DEFAULT_URL`]) |
    /// | `NATS_CLIENT_NAME` | name |
    /// | `NATS_USER`, `NATS_PASSWORD` | user and password |
    /// | `NATS_TOKEN` | token |
    /// | `NATS_NKEY_SEED` | NKey seed |
    /// | `NATS_CREDS` | credentials file |
    /// | `NATS_CA` | CA certificate |
    /// | `NATS_CERT`, `NATS_KEY` | client certificate and key |
    /// | `NATS_REQUIRE_TLS` | `1`/`true` to require TLS |
    /// | `NATS_CONNECT_TIMEOUT` | seconds (float) |
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for a value that
    /// cannot be read (a timeout that is not a number, a certificate without its key).
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Like [`ConnectOptions::from_env`], reading variables through `lookup`.
    ///
    /// # Errors
    /// As [`ConnectOptions::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut options = ConnectOptions::new(lookup("NATS_URL").as_deref().unwrap_or(""));
        options.name = lookup("NATS_CLIENT_NAME");
        options.user = lookup("NATS_USER");
        options.password = lookup("NATS_PASSWORD");
        options.token = lookup("NATS_TOKEN");
        options.nkey_seed = lookup("NATS_NKEY_SEED");
        options.credentials_file = lookup("NATS_CREDS").map(PathBuf::from);
        options.tls_ca = lookup("NATS_CA").map(PathBuf::from);
        options.tls_client_cert = match (lookup("NATS_CERT"), lookup("NATS_KEY")) {
            (Some(cert), Some(key)) => Some((cert.into(), key.into())),
            (None, None) => None,
            _ => {
                return Err(Error::invalid_argument(
                    "NATS_CERT and NATS_KEY must be set together",
                ))
            }
        };
        options.require_tls = matches!(
            lookup("NATS_REQUIRE_TLS").as_deref(),
            Some("1" | "true" | "yes")
        );
        if let Some(secs) = lookup("NATS_CONNECT_TIMEOUT") {
            let secs: f64 = secs.parse().map_err(|_| {
                Error::invalid_argument(format!("NATS_CONNECT_TIMEOUT is not a number: {secs:?}"))
            })?;
            if !(secs.is_finite() && secs > 0.0) {
                return Err(Error::invalid_argument(
                    "NATS_CONNECT_TIMEOUT must be > 0 seconds",
                ));
            }
            options.connect_timeout = Some(Duration::from_secs_f64(secs));
        }
        Ok(options)
    }

    /// The servers to use: the configured ones, or [`DEFAULT_URL`].
    pub fn server_urls(&self) -> Vec<String> {
        if self.servers.is_empty() {
            vec![DEFAULT_URL.to_owned()]
        } else {
            self.servers.clone()
        }
    }

    /// Sets the client name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets user and password.
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.user = Some(user.into());
        self.password = Some(password.into());
        self
    }

    /// Sets a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets the reconnect policy.
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// Sets the connection timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }
}

/// `url` with any `user:password@` or `token@` part replaced by `***@`, for logs and
/// error messages.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let rest = match rest.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => rest.to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest,
    }
}

fn split_urls(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn reads_environment_and_redacts_secrets() {
        let env: HashMap<&str, &str> = [
            ("NATS_URL", "nats://a:4222, nats://b:4222"),
            ("NATS_USER", "alice"),
            ("NATS_PASSWORD", "s3cret-pw"),
            ("NATS_TOKEN", "t0ken-value"),
            ("NATS_NKEY_SEED", "SUAXXXXSEED"),
            ("NATS_CONNECT_TIMEOUT", "1.5"),
        ]
        .into_iter()
        .collect();
        let options = ConnectOptions::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(options.servers, vec!["nats://a:4222", "nats://b:4222"]);
        assert_eq!(options.user.as_deref(), Some("alice"));
        assert_eq!(options.connect_timeout, Some(Duration::from_millis(1500)));

        let debug = format!("{options:?}");
        for secret in ["s3cret-pw", "t0ken-value", "SUAXXXXSEED"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("alice"));
    }

    #[test]
    fn bad_environment_is_an_error() {
        let err = ConnectOptions::from_lookup(|k| {
            (k == "NATS_CONNECT_TIMEOUT").then(|| "soon".to_owned())
        })
        .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);

        let err = ConnectOptions::from_lookup(|k| (k == "NATS_CERT").then(|| "c.pem".to_owned()))
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
    }

    #[test]
    fn urls_with_credentials_are_redacted() {
        assert_eq!(
            redact_url("nats://bob:pw@host:4222"),
            "nats://***@host:4222"
        );
        assert_eq!(redact_url("nats://tok@host"), "nats://***@host");
        assert_eq!(redact_url("nats://host:4222"), "nats://host:4222");
        assert_eq!(redact_url("host:4222"), "host:4222");
        let options = ConnectOptions::new("nats://bob:pw@host:4222");
        assert!(!format!("{options:?}").contains("pw"));
    }

    #[test]
    fn defaults() {
        let options = ConnectOptions::from_lookup(|_| None).unwrap();
        assert_eq!(options.server_urls(), vec![DEFAULT_URL.to_owned()]);
        let policy = ReconnectPolicy::default();
        assert_eq!(policy.delay(1), Duration::from_millis(50));
        assert_eq!(policy.delay(2), Duration::from_millis(100));
        assert_eq!(policy.delay(100), Duration::from_secs(2));
    }
}
