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
///
/// A server URL may carry credentials, `nats://user:password@host:4222` or
/// `nats://token@host:4222` (percent-encoded where needed); they are used when no
/// explicit credentials (user and password, token, NKey seed, credentials file) are set,
/// and are never shown in messages or logs.
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
    /// | `NATS_REQUIRE_TLS` | `true`/`1`/`yes`/`on` to require TLS, `false`/`0`/`no`/`off` not (any case) |
    /// | `NATS_CONNECT_TIMEOUT` | seconds (float) |
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for a value that
    /// cannot be read (a timeout that is not a number, a certificate without its key, a
    /// `NATS_REQUIRE_TLS` that is neither true nor false).
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
        if let Some(value) = lookup("NATS_REQUIRE_TLS") {
            options.require_tls = match value.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(Error::invalid_argument(format!(
                        "NATS_REQUIRE_TLS must be true or false (1/0, yes/no, on/off), \
                         not {value:?}"
                    )))
                }
            };
        }
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

    /// Checks the options without connecting: every server URL parses (scheme `nats`,
    /// `tls`, `ws` or `wss`, a host, a port that fits), the NKey seed is a valid seed,
    /// and at most one way to authenticate is set (user and password, token, NKey
    /// seed, credentials file; credentials in a URL yield to any of them).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) naming what is
    /// wrong, never showing a secret.
    pub fn validate(&self) -> Result<()> {
        self.servers()?;
        if self.user.is_some() != self.password.is_some() {
            return Err(Error::invalid_argument(
                "user and password must be set together",
            ));
        }
        let ways = [
            self.user.is_some(),
            self.token.is_some(),
            self.nkey_seed.is_some(),
            self.credentials_file.is_some(),
        ];
        if ways.iter().filter(|set| **set).count() > 1 {
            return Err(Error::invalid_argument(
                "set only one of user and password, token, NKey seed and credentials file",
            ));
        }
        if let Some(seed) = &self.nkey_seed {
            // A seed is secret: the message says what is wrong, never what it is.
            nkeys::KeyPair::from_seed(seed).map_err(|_| {
                Error::invalid_argument(
                    "the NKey seed is invalid (expected a user seed, 'SU' and 56 more characters)",
                )
            })?;
        }
        Ok(())
    }

    /// The server addresses, parsed, without the credentials they may carry, and those
    /// credentials (from the first URL that has some).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for a URL that
    /// does not parse; the message shows it with its credentials redacted.
    pub(crate) fn servers(&self) -> Result<(Vec<async_nats::ServerAddr>, Option<UrlAuth>)> {
        let mut addresses = Vec::new();
        let mut auth = None;
        for url in self.server_urls() {
            let invalid = |why: &str| {
                Error::invalid_argument(format!("invalid server URL {:?}: {why}", redact_url(&url)))
            };
            let address: async_nats::ServerAddr = url.parse().map_err(|e: std::io::Error| {
                // url's own wording, without the input it may echo.
                invalid(&e.to_string().replace("NATS server URL is invalid: ", ""))
            })?;
            let mut url = address.into_inner();
            if url.host_str().is_none_or(str::is_empty) {
                return Err(invalid("no host"));
            }
            if auth.is_none() && !url.username().is_empty() {
                let user = percent_decode(url.username());
                auth = Some(match url.password() {
                    Some(password) => UrlAuth::UserAndPassword(user, percent_decode(password)),
                    None => UrlAuth::Token(user),
                });
            }
            // Out of the URL: async-nats neither uses nor hides them.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            let address =
                async_nats::ServerAddr::from_url(url).map_err(|e| invalid(&e.to_string()))?;
            addresses.push(address);
        }
        Ok((addresses, auth))
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

/// Credentials found in a server URL.
pub(crate) enum UrlAuth {
    /// `user:password@`.
    UserAndPassword(String, String),
    /// A lone `token@`.
    Token(String),
}

/// Decodes `%XX` escapes (as in the user part of a URL); anything else stays as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn require_tls_reads_any_case_and_refuses_other_words() {
        let read = |value: &'static str| {
            ConnectOptions::from_lookup(|k| (k == "NATS_REQUIRE_TLS").then(|| value.to_owned()))
        };
        for yes in ["1", "true", "TRUE", "Yes", "on"] {
            assert!(read(yes).unwrap().require_tls, "{yes}");
        }
        for no in ["0", "false", "False", "NO", "off"] {
            assert!(!read(no).unwrap().require_tls, "{no}");
        }
        let err = read("sure").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert!(err.message().contains("NATS_REQUIRE_TLS"), "{err}");
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
    fn urls_are_checked_and_their_credentials_taken_out() {
        for bad in [
            "foo://bar",
            "::::",
            "nats://127.0.0.1:99999",
            "nats://:4222",
            "nats://a:4222,foo://b",
        ] {
            let error = ConnectOptions::new(bad).validate().unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::InvalidArgument, "{bad}");
            assert!(
                error.message().contains("invalid server URL"),
                "{bad}: {error}"
            );
        }
        let error = ConnectOptions::new("foo://alice:s3cret@bar")
            .validate()
            .unwrap_err();
        assert!(!error.message().contains("s3cret"), "{error}");

        let options = ConnectOptions::new("nats://alice:s3%40cret@host:4222, nats://other:4223");
        options.validate().unwrap();
        let (servers, auth) = options.servers().unwrap();
        let shown: Vec<&str> = servers.iter().map(|s| s.as_url_str()).collect();
        assert_eq!(shown, ["nats://host:4222", "nats://other:4223"]);
        match auth {
            Some(UrlAuth::UserAndPassword(user, password)) => {
                assert_eq!((user.as_str(), password.as_str()), ("alice", "s3@cret"));
            }
            _ => panic!("no user and password"),
        }
        let (_, auth) = ConnectOptions::new("tok3n@host").servers().unwrap();
        assert!(matches!(auth, Some(UrlAuth::Token(token)) if token == "tok3n"));
        let (servers, auth) = ConnectOptions::new("").servers().unwrap();
        assert_eq!(servers[0].as_url_str(), DEFAULT_URL);
        assert!(auth.is_none());
    }

    #[test]
    fn credentials_are_checked_without_showing_them() {
        let mut options = ConnectOptions::new("nats://host");
        options.nkey_seed = Some("SUnot-a-seed".into());
        let error = options.validate().unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::InvalidArgument);
        assert!(error.message().contains("NKey seed is invalid"), "{error}");
        assert!(!error.message().contains("not-a-seed"), "{error}");

        let both = ConnectOptions::new("nats://host")
            .user_and_password("alice", "pw")
            .token("t");
        assert_eq!(
            both.validate().unwrap_err().kind(),
            crate::ErrorKind::InvalidArgument
        );
        let mut half = ConnectOptions::new("nats://host");
        half.user = Some("alice".into());
        assert!(half.validate().is_err());
        ConnectOptions::new("nats://host")
            .user_and_password("alice", "pw")
            .validate()
            .unwrap();
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
