//! The decoders never panic, whatever the body: arbitrary bytes and arbitrary JSON values
//! (including wrong types and nulls in every position) only ever give `Ok` or `Err`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use fly::decode;
use fly::stolon::{parse_stolonctl_run, MachineEnv};
use fly::*;
use proptest::prelude::*;
use serde_json::Value;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let keys = prop_oneof![
            // Real field names, so wrong types land on the fields the decoders care about.
            Just("id".to_string()),
            Just("name".to_string()),
            Just("state".to_string()),
            Just("config".to_string()),
            Just("checks".to_string()),
            Just("events".to_string()),
            Just("env".to_string()),
            Just("metadata".to_string()),
            Just("mounts".to_string()),
            Just("exit_code".to_string()),
            Just("stdout".to_string()),
            Just("data".to_string()),
            Just("nonce".to_string()),
            Just("version".to_string()),
            Just("apps".to_string()),
            Just("meta".to_string()),
            Just("attributes".to_string()),
            Just("error".to_string()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn decode_all(body: &[u8]) {
    let _ = decode::json::<Machine>(body);
    let _ = decode::json::<Vec<Machine>>(body);
    let _ = decode::json::<App>(body);
    let _ = decode::json::<ListAppsResponse>(body);
    let _ = decode::json::<Lease>(body);
    let _ = decode::json::<ExecOutput>(body);
    let _ = decode::json::<WaitMachineResponse>(body);
    let _ = decode::json::<Vec<MachineEvent>>(body);
    let _ = decode::json::<Vec<Volume>>(body);
    let _ = decode::json::<AppSecretsUpdateResp>(body);
    let _ = decode::json::<AppSecrets>(body);
    let _ = decode::json::<CurrentTokenResponse>(body);
    let _ = decode::error_body(body);
    if let Ok(events) = decode::json::<Vec<MachineEvent>>(body) {
        for e in events {
            let _ = e.exit_event();
        }
    }
    if let Ok(m) = decode::json::<Machine>(body) {
        let _ = m.image();
        let _ = fly::stolon::role(&m);
    }
    let text = String::from_utf8_lossy(body);
    let _ = parse_stolonctl_run(&text);
    let _ = MachineEnv::parse(&text).credentials();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_all(&body);
    }

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        let body = serde_json::to_vec(&v).unwrap_or_default();
        decode_all(&body);
    }

    #[test]
    fn machine_config_round_trips_unknown_fields(extra in prop::collection::btree_map("x_[a-z]{1,6}", arb_json(), 0..4)) {
        let mut v = serde_json::json!({"image": "flyio/postgres:14.6"});
        for (k, val) in &extra {
            v[k] = val.clone();
        }
        let cfg: MachineConfig = serde_json::from_value(v.clone()).unwrap();
        let back = serde_json::to_value(&cfg).unwrap();
        prop_assert_eq!(back, v);
    }
}

#[test]
fn lease_decodes_both_the_wire_and_the_document_shape() {
    let wrapped: Lease =
        decode::json(br#"{"status":"success","data":{"nonce":"n","expires_at":5}}"#).unwrap();
    let flat: Lease = decode::json(br#"{"nonce":"n","expires_at":5}"#).unwrap();
    assert_eq!(wrapped, flat);
    assert_eq!(flat.nonce.as_deref(), Some("n"));
}

#[test]
fn nulls_from_go_are_tolerated() {
    let m: Machine = decode::json(br#"{"id":"m","checks":null,"events":null,"config":{"env":null,"metadata":null,"mounts":null,"services":null,"checks":null}}"#).unwrap();
    assert!(m.checks.is_empty());
    let out: ExecOutput = decode::json(br#"{"stdout":"x"}"#).unwrap();
    assert_eq!(out.exit_code, 0, "absent exit_code is Go's omitted zero");
}
