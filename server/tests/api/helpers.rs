use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use walden::config::ServeArgs;
use walden::startup::Application;

/// A console running in this test process.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub dir: TempDir,
    pub metrics_base: String,
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Stop the console the way a signal would, and wait until it has finished.
    pub async fn stop(self) -> TempDir {
        self.shutdown.cancel();
        self.handle
            .await
            .expect("server task panicked")
            .expect("server failed");
        self.dir
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with the configuration adjusted by `tweak` before the build.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut ServeArgs)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut config = ServeArgs::new(dir.path().join("data"), addr);
    config.shutdown_grace_secs = 5;
    config.metrics_bind = Some("127.0.0.1:0".parse().expect("addr"));
    tweak(&mut config);
    let app = Application::build_on(config, listener)
        .await
        .expect("build app");
    let metrics_addr = app.metrics_addr().expect("metrics listener");
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        base: format!("http://{addr}"),
        metrics_base: format!("http://{metrics_addr}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        dir,
        shutdown,
        handle,
    }
}
