use crate::helpers::spawn_app;

// The console runs on a multi-thread runtime in production; run it the same way here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_the_database_cleanly() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let db = app.data_dir().join(walden_core::db::DB_FILE);
    let dir = app.stop().await;
    // SQLite folds the write-ahead log back and removes it when the last connection closes cleanly.
    assert!(db.exists());
    assert!(
        !db.with_extension("db-wal").exists(),
        "WAL file left behind: the pool was not closed"
    );
    drop(dir);
}
