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

/// A request already in flight when the shutdown signal arrives is answered in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_flight_request_finishes_after_the_signal() {
    use leptos::server_fn::ServerFn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use walden_app::api::status::GetConsoleStatus;

    let app = spawn_app().await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = "unused=1";
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        <GetConsoleStatus as ServerFn>::PATH,
        body.len()
    );
    // Headers and half the body: the request is in flight.
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..3]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    app.shutdown.cancel();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !app.handle.is_finished(),
        "the server waits for the request"
    );

    stream.write_all(&body.as_bytes()[3..]).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"database_ok\":true"), "{response}");

    // New connections are refused once the server has drained.
    app.handle.await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
}
