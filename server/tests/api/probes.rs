use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "ok");
    app.stop().await;
}

#[tokio::test]
async fn readyz_checks_the_database() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "ready");
    app.stop().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    let id = res
        .headers()
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");

    let other = app.client.get(app.url("/")).send().await.unwrap();
    let other_id = other
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert_ne!(id, other_id, "ids are per request");

    // An incoming id (a proxy's, or one a client made up) is never ours: it would land in audit rows and be
    // echoed back (security review L1). It is logged apart as the proxy's; the response carries our own.
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "=HYPERLINK(\"https://evil.invalid\")")
        .send()
        .await
        .unwrap();
    let ours = res.headers().get("x-request-id").unwrap().to_str().unwrap();
    assert_eq!(ours.len(), 36, "the server's own UUID: {ours}");
    assert!(!ours.contains("HYPERLINK"));
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_on_their_own_port() {
    let app = spawn_app().await;
    for _ in 0..3 {
        app.client.get(app.url("/readyz")).send().await.unwrap();
    }
    app.client
        .get(app.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    let body = app
        .client
        .get(format!("{}/metrics", app.metrics_base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let readyz = body
        .lines()
        .find(|l| {
            l.starts_with("http_requests_total{")
                && l.contains("route=\"/readyz\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no readyz counter in:\n{body}"));
    let count: f64 = readyz.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{readyz}");
    assert!(
        !body.contains("/no/such/page"),
        "raw paths must not become labels"
    );
    assert!(body.contains("http_request_duration_seconds_bucket"));
    // The public port does not serve metrics.
    let public = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);
    app.stop().await;
}
