//! `walden flysim`: the emulator as a standalone process serves the demo org and stops on a signal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn flysim_serves_the_demo_org_and_persists_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("flysim.json");
    let storage = dir.path().join("walg");
    let mut child = Command::new(env!("CARGO_BIN_EXE_walden"))
        .args(["flysim", "--bind", "127.0.0.1:0", "--state"])
        .arg(&state)
        .arg("--storage")
        .arg(&storage)
        .env_remove("FLY_API_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut vars = std::collections::BTreeMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some((k, v)) = line.split_once('=') {
            vars.insert(k.to_string(), v.to_string());
        }
        if line.starts_with("FLY_API_TOKEN=") {
            break;
        }
    }
    let base = vars
        .get("FLY_FLAPS_BASE_URL")
        .cloned()
        .expect("base URL printed");
    let token = vars.get("FLY_API_TOKEN").cloned().expect("token printed");
    assert_eq!(vars.get("FLY_API_HOSTNAME"), Some(&base));
    let http = reqwest::Client::new();
    let apps: serde_json::Value = http
        .get(format!("{base}/v1/apps?org_slug=demo"))
        .header("Authorization", format!("FlyV1 {token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(apps["apps"][0]["name"], "demo-db");
    assert_eq!(apps["apps"][0]["machine_count"], 3);
    let r = http
        .get(format!("{base}/v1/apps?org_slug=demo"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(storage.join("basebackups_005").is_dir());

    // SIGINT stops it cleanly and the state file is written.
    let pid = child.id().to_string();
    let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert!(saved["apps"]["demo-db"].is_object());
}
