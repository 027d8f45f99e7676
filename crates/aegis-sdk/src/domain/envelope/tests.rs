use serde_json::{json, Value};

use super::*;
use crate::domain::codec::Encoding;
use crate::ErrorKind;

fn keys_of(bytes: &[u8]) -> Vec<String> {
    let value: Value = codec::decode(bytes).unwrap();
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

fn sorted(keys: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    keys.sort();
    keys
}

const BASE: [&str; 6] = [
    "message_id",
    "trace_id",
    "correlation_id",
    "timestamp",
    "source",
    "target",
];

#[test]
fn envelopes_emit_exactly_the_contract_keys() {
    for encoding in [Encoding::MessagePack, Encoding::Json] {
        let request = RpcRequest::new("echo", json!({"message": "hi"}));
        let want: Vec<&str> = BASE
            .iter()
            .copied()
            .chain(["method", "params", "timeout"])
            .collect();
        assert_eq!(keys_of(&encoding.encode(&request).unwrap()), sorted(&want));

        let response = RpcResponse::ok(Some("id".into()), None, json!(1));
        let want: Vec<&str> = BASE
            .iter()
            .copied()
            .chain(["success", "result", "error"])
            .collect();
        assert_eq!(keys_of(&encoding.encode(&response).unwrap()), sorted(&want));

        let event = Event::new("order", "created", json!({}));
        let want: Vec<&str> = BASE
            .iter()
            .copied()
            .chain(["domain", "event_type", "payload", "version"])
            .collect();
        assert_eq!(keys_of(&encoding.encode(&event).unwrap()), sorted(&want));

        let command = Command::new("process", json!({}));
        let want: Vec<&str> = BASE
            .iter()
            .copied()
            .chain(["command", "payload", "priority", "max_retries", "timeout"])
            .collect();
        assert_eq!(keys_of(&encoding.encode(&command).unwrap()), sorted(&want));
    }
}

#[test]
fn defaults_follow_the_contract() {
    let request = RpcRequest::new("m", json!({}));
    assert_eq!(request.timeout, 5.0);
    assert!(uuid::Uuid::parse_str(&request.message_id).is_ok());
    assert!(uuid::Uuid::parse_str(&request.trace_id).is_ok());
    assert!(
        request.timestamp.ends_with("+00:00"),
        "{}",
        request.timestamp
    );
    assert!(parse_timestamp(&request.timestamp).is_ok());

    let command = Command::new("c", json!({}));
    assert_eq!(command.priority, Priority::Normal);
    assert_eq!(command.max_retries, 3);
    assert_eq!(command.timeout, 300.0);

    let event = Event::new("d", "t", json!({}));
    assert_eq!(event.version, "1.0");
}

#[test]
fn timestamps_with_z_are_accepted() {
    assert!(parse_timestamp("2026-01-02T03:04:05.123456Z").is_ok());
    assert!(parse_timestamp("2026-01-02T03:04:05.123456+00:00").is_ok());
    assert!(parse_timestamp("yesterday").is_err());
}

#[test]
fn decoding_fills_defaults_and_ignores_unknown_keys() {
    let bytes = serde_json::to_vec(&json!({"method": "echo", "extra": 1})).unwrap();
    let request = RpcRequest::<Value>::decode_untyped(&bytes).unwrap();
    assert_eq!(request.params, json!({}));
    assert_eq!(request.timeout, 5.0);

    // An integer where a float is due is fine.
    let bytes = Encoding::MessagePack
        .encode(&json!({"method": "echo", "timeout": 2}))
        .unwrap();
    assert_eq!(RpcRequest::<Value>::decode(&bytes).unwrap().timeout, 2.0);
}

#[test]
fn typed_params_decode_directly() {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Echo {
        message: String,
    }
    let request = RpcRequest::new("echo", json!({"message": "hi"}));
    let bytes = Encoding::MessagePack.encode(&request).unwrap();
    let decoded = RpcRequest::<Echo>::decode(&bytes).unwrap();
    assert_eq!(decoded.params.message, "hi");
    assert_eq!(decoded.message_id, request.message_id);
}

#[test]
fn a_wrong_type_inside_typed_params_is_named_in_either_encoding() {
    #[derive(serde::Deserialize, Debug)]
    struct Add {
        #[allow(dead_code)]
        a: i64,
    }
    let value = json!({"method": "add", "params": {"a": "x"}});
    for encoding in [Encoding::MessagePack, Encoding::Json] {
        let bytes = encoding.encode(&value).unwrap();
        let err = RpcRequest::<Add>::decode(&bytes).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert_eq!(
            err.message(),
            "invalid `params`: at `a`: invalid type: string \"x\", expected i64",
            "{encoding:?}"
        );
        // Through the hot path too.
        let Err(err) = crate::domain::hot::decode_request::<Add>(&bytes) else {
            panic!("decoded as {encoding:?}");
        };
        assert!(
            err.message().contains("expected i64"),
            "{encoding:?}: {err}"
        );
    }
}

#[test]
fn invalid_requests_are_typed_errors() {
    let cases = [
        (json!({"params": {}}), ErrorKind::Decode),
        (json!({"method": ""}), ErrorKind::InvalidArgument),
        (json!({"method": 5}), ErrorKind::Decode),
        (json!({"method": "m", "timeout": "soon"}), ErrorKind::Decode),
        (
            json!({"method": "m", "timeout": 0}),
            ErrorKind::InvalidArgument,
        ),
        (
            json!({"method": "m", "timeout": -1.0}),
            ErrorKind::InvalidArgument,
        ),
        (json!({"method": "m", "params": [1, 2]}), ErrorKind::Decode),
        (json!({"method": "m", "params": "x"}), ErrorKind::Decode),
        (json!([1, 2, 3]), ErrorKind::Decode),
    ];
    for (value, kind) in cases {
        for encoding in [Encoding::MessagePack, Encoding::Json] {
            let bytes = encoding.encode(&value).unwrap();
            let err = RpcRequest::<Value>::decode_untyped(&bytes).unwrap_err();
            assert_eq!(err.kind(), kind, "{value} as {encoding:?}: {err}");
        }
    }
}

#[test]
fn invalid_commands_and_events_are_typed_errors() {
    let bad_commands = [
        json!({"command": "c", "priority": "urgent"}),
        json!({"command": "c", "max_retries": -1}),
        json!({"command": "c", "timeout": 0}),
        json!({"payload": {}}),
    ];
    for value in bad_commands {
        let bytes = serde_json::to_vec(&value).unwrap();
        assert!(Command::<Value>::decode(&bytes).is_err(), "{value}");
    }
    let good = serde_json::to_vec(&json!({"command": "c", "priority": "critical"})).unwrap();
    assert_eq!(
        Command::<Value>::decode(&good).unwrap().priority,
        Priority::Critical
    );

    for version in ["1", "1.x", "v1.0", "1.0.0.0", ""] {
        let bytes =
            serde_json::to_vec(&json!({"domain": "d", "event_type": "t", "version": version}))
                .unwrap();
        assert!(Event::<Value>::decode(&bytes).is_err(), "{version}");
    }
    for version in ["1.0", "2.10.3"] {
        let bytes =
            serde_json::to_vec(&json!({"domain": "d", "event_type": "t", "version": version}))
                .unwrap();
        assert_eq!(Event::<Value>::decode(&bytes).unwrap().version, version);
    }
}

#[test]
fn failure_response_round_trip() {
    let response: RpcResponse<Value> =
        RpcResponse::failure(Some("req-1".into()), None, "INTERNAL_ERROR: boom");
    for encoding in [Encoding::MessagePack, Encoding::Json] {
        let bytes = encoding.encode(&response).unwrap();
        let back = RpcResponse::<Value>::decode(&bytes).unwrap();
        assert!(!back.success);
        assert_eq!(back.result, None);
        assert_eq!(back.error.as_deref(), Some("INTERNAL_ERROR: boom"));
        assert_eq!(back.correlation_id.as_deref(), Some("req-1"));
    }
}

#[test]
fn hand_written_timestamp_matches_chrono() {
    use chrono::TimeZone;
    for (secs, nanos) in [
        (0i64, 0u32),
        (1_767_323_045, 123_456_789),
        (253_402_300_799, 999_999_000),
    ] {
        let time = chrono::Utc.timestamp_opt(secs, nanos).unwrap();
        assert_eq!(
            format_timestamp(time),
            time.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
        );
    }
    // The per-second cache gives the same text, within a second and across seconds.
    for (secs, nanos) in [
        (1_767_323_045u64, 123_456_789u32),
        (1_767_323_045, 999_999_999),
        (1_767_323_046, 0),
        (1_767_323_045, 5_000),
        (0, 1_000),
        (253_402_300_799, 999_999_000),
    ] {
        let time = chrono::Utc.timestamp_opt(secs as i64, nanos).unwrap();
        let since_epoch = std::time::Duration::new(secs, nanos);
        assert_eq!(timestamp_at(since_epoch), format_timestamp(time));
    }
    let now = parse_timestamp(&now_timestamp()).unwrap();
    assert!((chrono::Utc::now() - now).num_seconds().abs() <= 1);

    let id = new_id();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    assert_eq!(id, id.to_lowercase());
}

#[test]
fn borrowed_request_encodes_like_the_owned_one() {
    let owned = RpcRequest::new("echo", json!({"message": "hi"}));
    let borrowed = RpcRequestRef {
        message_id: &owned.message_id,
        trace_id: &owned.trace_id,
        correlation_id: None,
        timestamp: &owned.timestamp,
        source: None,
        target: None,
        method: "echo",
        params: &owned.params,
        timeout: owned.timeout,
    };
    for encoding in [Encoding::MessagePack, Encoding::Json] {
        assert_eq!(
            encoding.encode(&borrowed).unwrap(),
            encoding.encode(&owned).unwrap()
        );
    }
}
