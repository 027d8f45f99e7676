//! Tests against real `nats-server` processes.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::http::{json_str, json_u64};
use crate::{free_port, nats_server_binary, NatsCluster, NatsServer};

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

/// Connects to the client port and returns the first line the server sends.
fn info_line(port: u16) -> String {
    let stream = connect(port).unwrap_or_else(|err| panic!("connect to {port}: {err}"));
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .unwrap_or_else(|err| panic!("read INFO from {port}: {err}"));
    line
}

/// Speaks just enough NATS protocol to make a JetStream API request.
fn js_request(port: u16, subject: &str, payload: &str) -> String {
    let stream = connect(port).expect("connect");
    let mut writer = stream.try_clone().expect("clone socket");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("read INFO");
    assert!(line.starts_with("INFO "), "unexpected greeting {line:?}");
    write!(
        writer,
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true}}\r\n\
         SUB _INBOX.test 1\r\nPUB {subject} _INBOX.test {}\r\n{payload}\r\nPING\r\n",
        payload.len()
    )
    .expect("write request");
    loop {
        line.clear();
        reader.read_line(&mut line).expect("read reply");
        if line.starts_with("MSG ") {
            let len: usize = line.trim_end().rsplit(' ').next().unwrap().parse().unwrap();
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body).expect("read reply payload");
            body.truncate(len);
            return String::from_utf8(body).expect("utf-8 reply");
        }
        assert!(!line.starts_with("-ERR"), "server error: {line}");
    }
}

#[test]
fn binary_is_found() {
    let binary = nats_server_binary();
    assert!(binary.is_file(), "{} is not a file", binary.display());
}

#[test]
fn free_ports_are_distinct_and_bindable() {
    let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
    let distinct: BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), ports.len(), "duplicate ports in {ports:?}");
    for port in ports.iter().take(5) {
        assert_ne!(*port, 4222);
        TcpListener::bind(("127.0.0.1", *port)).expect("free port is bindable");
    }
}

#[test]
fn start_serves_clients_with_jetstream() {
    let server = NatsServer::start();
    let port = server.port();
    assert_ne!(port, 4222);
    assert_eq!(server.url(), format!("nats://127.0.0.1:{port}"));
    assert!(server.is_running());
    assert!(server.pid().is_some());
    let info = info_line(port);
    assert!(info.starts_with("INFO "), "first line was {info:?}");
    assert!(info.contains(&format!("\"port\":{port}")), "{info}");
    assert!(info.contains("\"jetstream\":true"), "{info}");
    assert!(
        info.contains(&format!("\"server_name\":\"{}\"", server.name())),
        "{info}"
    );
    // JetStream stores into our store dir.
    let jsz = server.monitor_get("/jsz").unwrap();
    let store = json_str(&jsz, "store_dir").expect("store_dir in /jsz");
    assert!(
        PathBuf::from(&store).starts_with(server.store_dir()),
        "{store} not under {}",
        server.store_dir().display()
    );
    assert!(server.store_dir().starts_with(server.temp_dir()));
    assert!(server.log_path().is_file());
}

#[test]
fn builder_options_reach_the_server() {
    let server = NatsServer::builder()
        .max_payload(2 * 1024 * 1024)
        .jetstream(false)
        .config_extra("max_connections: 77")
        .start();
    let info = info_line(server.port());
    assert!(info.contains("\"max_payload\":2097152"), "{info}");
    assert!(!info.contains("\"jetstream\":true"), "{info}");
    let varz = server.monitor_get("/varz").unwrap();
    assert_eq!(json_u64(&varz, "max_connections"), Some(77));
    let jsz = server.monitor_get("/jsz").unwrap();
    assert!(jsz.contains("\"disabled\": true"), "{jsz}");
    assert!(!server.store_dir().join("jetstream").exists());
}

#[test]
fn large_max_payload_raises_max_pending() {
    let server = NatsServer::builder().max_payload(100 * 1024 * 1024).start();
    let info = info_line(server.port());
    assert!(info.contains("\"max_payload\":104857600"), "{info}");
}

#[test]
fn restart_keeps_port_store_dir_and_streams() {
    let mut server = NatsServer::start();
    let port = server.port();
    let store_dir = server.store_dir().to_path_buf();
    let pid = server.pid().unwrap();
    let reply = js_request(
        port,
        "$JS.API.STREAM.CREATE.ORDERS",
        r#"{"name":"ORDERS","subjects":["orders.>"],"storage":"file"}"#,
    );
    assert!(
        reply.contains("\"type\":\"io.nats.jetstream.api.v1.stream_create_response\""),
        "{reply}"
    );
    assert!(!reply.contains("\"error\""), "{reply}");
    std::fs::write(store_dir.join("marker"), b"kept").unwrap();

    server.restart();

    assert!(server.is_running());
    assert_ne!(server.pid(), Some(pid), "restart must start a new process");
    assert_eq!(server.port(), port);
    assert_eq!(server.store_dir(), store_dir);
    assert_eq!(std::fs::read(store_dir.join("marker")).unwrap(), b"kept");
    assert!(info_line(port).starts_with("INFO "));
    let jsz = server.monitor_get("/jsz").unwrap();
    assert_eq!(json_u64(&jsz, "streams"), Some(1), "{jsz}");
    let info = js_request(port, "$JS.API.STREAM.INFO.ORDERS", "");
    assert!(info.contains("\"name\":\"ORDERS\""), "{info}");
}

#[test]
fn stop_refuses_connections_until_started_again() {
    let mut server = NatsServer::start();
    let port = server.port();
    server.stop();
    assert!(!server.is_running());
    assert_eq!(server.pid(), None);
    let err = connect(port).expect_err("stopped server still accepts connections");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert!(server.store_dir().is_dir(), "store dir must survive stop");
    server.stop(); // idempotent

    server.start_again();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert!(info_line(port).starts_with("INFO "));
    server.start_again(); // no-op while running
    assert!(server.is_running());
}

#[test]
fn drop_kills_the_process_and_removes_the_temp_dir() {
    let server = NatsServer::start();
    let pid = server.pid().unwrap();
    let port = server.port();
    let dir = server.temp_dir().to_path_buf();
    assert!(dir.is_dir());
    drop(server);
    assert!(!dir.exists(), "{} still exists", dir.display());
    #[cfg(target_os = "linux")]
    assert!(
        !PathBuf::from(format!("/proc/{pid}")).exists(),
        "nats-server {pid} still exists"
    );
    let _ = pid;
    let err = connect(port).expect_err("dropped server still accepts connections");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn servers_in_parallel_get_distinct_ports() {
    let servers: Vec<NatsServer> = (0..4).map(|_| NatsServer::start()).collect();
    let ports: BTreeSet<u16> = servers.iter().map(NatsServer::port).collect();
    assert_eq!(ports.len(), servers.len());
    for server in &servers {
        assert!(info_line(server.port()).contains(server.name()));
    }
}

#[test]
fn failed_start_reports_the_server_output() {
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        NatsServer::builder()
            .config_extra("this line { is not valid")
            .start()
    }));
    let payload = result.expect_err("a broken config must not start");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("failed to start"), "{message}");
    assert!(message.contains("exited during startup"), "{message}");
    assert!(
        message.contains("this line { is not valid"),
        "config missing: {message}"
    );
    assert!(message.contains("--- stderr tail ---"), "{message}");
}

#[test]
fn starts_are_quick() {
    let started = Instant::now();
    for _ in 0..5 {
        let server = NatsServer::start();
        assert!(server.is_running());
    }
    // Typically ~50 ms each; be generous for loaded CI machines.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn cluster_of_three_has_routes_and_jetstream() {
    let mut cluster = NatsCluster::start(3);
    let urls = cluster.urls();
    assert_eq!(urls.len(), 3);
    assert_eq!(urls.iter().collect::<BTreeSet<_>>().len(), 3);
    let names: BTreeSet<String> = cluster
        .nodes()
        .iter()
        .map(|node| node.name().to_owned())
        .collect();
    assert_eq!(names.len(), 3);
    let mut leaders = BTreeSet::new();
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert_eq!(urls[i], node.url());
        let info = info_line(node.port());
        assert!(info.starts_with("INFO "), "{info}");
        assert!(
            info.contains(&format!("\"cluster\":\"{}\"", cluster.name())),
            "{info}"
        );
        let routez = node.monitor_get("/routez").unwrap();
        let routes = json_u64(&routez, "num_routes").unwrap();
        assert!(routes >= 2, "node {i} has {routes} routes: {routez}");
        for other in names.iter().filter(|name| *name != node.name()) {
            assert!(
                routez.contains(&format!("\"remote_name\": \"{other}\"")),
                "node {i} has no route to {other}: {routez}"
            );
        }
        assert!(node.monitor_get("/healthz").unwrap().contains("\"ok\""));
        let jsz = node.monitor_get("/jsz").unwrap();
        assert_eq!(json_u64(&jsz, "cluster_size"), Some(3), "{jsz}");
        leaders.insert(json_str(&jsz, "leader").unwrap());
    }
    assert_eq!(
        leaders.len(),
        1,
        "nodes disagree on the meta leader: {leaders:?}"
    );
    assert!(names.contains(leaders.first().unwrap()));

    // A replicated stream works, and a node can be restarted on its port.
    let reply = js_request(
        cluster.node(0).port(),
        "$JS.API.STREAM.CREATE.R3",
        r#"{"name":"R3","subjects":["r3.>"],"num_replicas":3}"#,
    );
    assert!(!reply.contains("\"error\""), "{reply}");
    let port = cluster.node(2).port();
    cluster.node_mut(2).restart();
    assert_eq!(cluster.node(2).port(), port);
    cluster.wait_healthy();
    assert!(info_line(port).starts_with("INFO "));
}

#[test]
fn handles_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<NatsServer>();
    assert_send_sync::<NatsCluster>();
}
