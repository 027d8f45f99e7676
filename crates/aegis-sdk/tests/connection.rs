//! Connecting with credentials, against real servers that require them.

use std::time::Duration;

use aegis_sdk::ports::{ConnectionEvent, ConnectionState};
use aegis_sdk::{Client, ConnectOptions, ErrorKind, ReconnectPolicy};
use aegis_test_support::NatsServer;

fn quick(url: &str) -> ConnectOptions {
    ConnectOptions::new(url)
        .connect_timeout(Duration::from_secs(2))
        .reconnect(ReconnectPolicy {
            max_attempts: Some(1),
            ..ReconnectPolicy::default()
        })
}

#[tokio::test]
async fn token_authentication() {
    let server = NatsServer::builder()
        .config_extra("authorization { token: \"s3cret-token\" }")
        .start();

    let client = Client::connect(&quick(&server.url()).token("s3cret-token"))
        .await
        .unwrap();
    assert_eq!(client.connection_state(), ConnectionState::Connected);

    let err = Client::connect(&quick(&server.url()).token("wrong"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert!(!err.to_string().contains("wrong"), "{err}");
}

#[tokio::test]
async fn user_and_password_authentication_from_the_environment() {
    let server = NatsServer::builder()
        .config_extra("authorization { user: alice, password: \"pa55word\" }")
        .start();
    let url = server.url();
    let env = move |name: &str| match name {
        "NATS_URL" => Some(url.clone()),
        "NATS_USER" => Some("alice".to_owned()),
        "NATS_PASSWORD" => Some("pa55word".to_owned()),
        _ => None,
    };
    let options = ConnectOptions::from_lookup(env).unwrap();
    assert!(!format!("{options:?}").contains("pa55word"));
    let client = Client::connect(&options).await.unwrap();
    assert_eq!(client.connection_state(), ConnectionState::Connected);

    let err = Client::connect(&quick(&server.url()).user_and_password("alice", "nope"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
}

#[tokio::test]
async fn credentials_in_the_url_are_used_and_never_shown() {
    let server = NatsServer::builder()
        .config_extra("authorization { user: alice, password: \"s3cret@pw\" }")
        .start();
    let with = |userinfo: &str| format!("nats://{userinfo}@127.0.0.1:{}", server.port());

    // `@` in the password is percent-encoded in the URL.
    let options = quick(&with("alice:s3cret%40pw"));
    assert!(!format!("{options:?}").contains("s3cret"));
    let client = Client::connect(&options).await.unwrap();
    assert_eq!(client.connection_state(), ConnectionState::Connected);
    client.transport().flush().await.unwrap();

    let err = Client::connect(&quick(&with("alice:wrong")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert!(!err.to_string().contains("wrong"), "{err}");
    // Explicit credentials win over the URL's.
    let err = Client::connect(&quick(&with("alice:s3cret%40pw")).user_and_password("alice", "no"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);

    // A lone user part is a token.
    let server = NatsServer::builder()
        .config_extra("authorization { token: \"t0ken\" }")
        .start();
    let client = Client::connect(&quick(&format!("nats://t0ken@127.0.0.1:{}", server.port())))
        .await
        .unwrap();
    assert_eq!(client.connection_state(), ConnectionState::Connected);
}

#[tokio::test]
async fn malformed_options_are_refused_before_connecting() {
    for url in ["foo://bar", "::::", "nats://127.0.0.1:99999"] {
        let err = Client::connect(&quick(url)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{url}: {err}");
    }
    let mut options = quick("nats://127.0.0.1:4222");
    options.nkey_seed = Some("not a seed".into());
    let err = Client::connect(&options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains("NKey seed is invalid"), "{err}");
}

#[tokio::test]
async fn unreachable_server_is_a_connection_error() {
    let port = aegis_test_support::free_port();
    let err = Client::connect(&quick(&format!("nats://127.0.0.1:{port}")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
}

#[tokio::test]
async fn connection_events_report_outage_and_recovery() {
    let mut server = NatsServer::start();
    let client = Client::connect(&ConnectOptions::new(server.url()))
        .await
        .unwrap();
    let mut events = client.connection_events();

    server.stop();
    assert!(wait_for(&mut events, ConnectionEvent::Disconnected).await);
    assert_eq!(client.connection_state(), ConnectionState::Disconnected);

    server.start_again();
    assert!(wait_for(&mut events, ConnectionEvent::Connected).await);
    assert_eq!(client.connection_state(), ConnectionState::Connected);
}

async fn wait_for(
    events: &mut tokio::sync::broadcast::Receiver<ConnectionEvent>,
    want: ConnectionEvent,
) -> bool {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match events.recv().await {
                Ok(event) if event == want => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false)
}

#[tokio::test]
async fn requiring_tls_of_a_plain_server_says_so() {
    let server = NatsServer::start();
    let mut options = quick(&server.url());
    options.require_tls = true;
    let err = Client::connect(&options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert!(err.message().contains("TLS is required"), "{err}");
}
