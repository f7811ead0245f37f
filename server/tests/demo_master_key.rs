//! Demo mode without `WALDEN_MASTER_KEY`: the console generates a master key once, keeps it owner-only in
//! `<data dir>/demo/master.key` and uses it again after a restart; outside demo mode nothing is generated and
//! start-up refuses to go on without a key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use tokio::net::TcpListener;
use walden::config::ServeArgs;
use walden::startup::Application;

async fn build(data: &std::path::Path, tweak: impl FnOnce(&mut ServeArgs)) -> Application {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = ServeArgs::new(data.to_path_buf(), listener.local_addr().unwrap());
    tweak(&mut config);
    Application::build_on(config, listener).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_generates_a_master_key_once_and_keeps_it_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = data.join("demo").join("master.key");

    drop(build(&data, |_| {}).await);
    let key = std::fs::read_to_string(&file).unwrap();
    assert_eq!(key.len(), 64, "64 hex characters");
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A restart uses the same key (what was sealed still opens).
    drop(build(&data, |_| {}).await);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), key);

    // A configured key wins: nothing is generated.
    let other = dir.path().join("configured");
    drop(build(&other, |c| c.master_key = Some("cd".repeat(32).into())).await);
    assert!(!other.join("demo").join("master.key").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_demo_mode_a_missing_key_stops_start_up_and_none_is_generated() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = ServeArgs::new(data.clone(), listener.local_addr().unwrap());
    config.fly_api_token = Some("fm2_not_demo".to_owned().into());
    config.fly_machines_url = Some("http://127.0.0.1:9".into());
    config.fly_api_url = Some("http://127.0.0.1:9".into());
    let Err(err) = Application::build_on(config, listener).await else {
        panic!("a console outside demo mode started without a master key");
    };
    let text = format!("{err:#}");
    assert!(text.contains("WALDEN_MASTER_KEY is not set"), "{text}");
    assert!(!data.join("demo").join("master.key").exists());
}
