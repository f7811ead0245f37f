use crate::helpers::spawn_app;

/// Leptos marks text boundaries for hydration (`<h1>Clusters<!></h1>`); where it puts them is its business.
const HYDRATION_MARKER: &str = "<!>";

#[tokio::test]
async fn the_home_page_renders_the_shell() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap().replace(HYDRATION_MARKER, "");
    for (href, label) in [
        ("/clusters", "Clusters"),
        ("/restores", "Restores"),
        ("/audit", "Audit"),
        ("/settings", "Settings"),
    ] {
        assert!(
            html.contains(&format!("href=\"{href}\"")) && html.contains(label),
            "navigation link {label} missing"
        );
    }
    assert!(
        html.contains("data-test=\"demo-badge\""),
        "demo badge missing"
    );
    assert!(html.contains("<title>Clusters · Walden</title>"), "title");
    assert!(html.contains("/pkg/walden"), "hydration scripts missing");
    assert!(html.contains("Skip to content"), "skip link");
    // Signed out: no cluster data, an invitation to sign in instead.
    assert!(
        !html.contains(flysim::DEMO_APP),
        "cluster data shown to an anonymous visitor"
    );
    assert!(
        html.contains("data-test=\"sign-in-needed\""),
        "sign-in prompt"
    );
    app.stop().await;
}

/// Signed in with nothing tracked, the home page says how to track a cluster (the tracked rows themselves:
/// `home.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_in_the_home_page_says_how_to_track_a_cluster() {
    use crate::helpers::app;
    use walden_core::users::Role;

    let app = app().await;
    let viewer = app.signed_in(Role::Viewer).await;
    let html = viewer
        .client
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .replace(HYDRATION_MARKER, "");
    assert!(
        html.contains("data-test=\"no-tracked-clusters\""),
        "the empty state"
    );
    assert!(html.contains("href=\"/settings/orgs\""), "the hint's link");
    assert!(!html.contains("data-test=\"sign-in-needed\""));
    app.stop().await;
}

#[tokio::test]
async fn each_section_has_its_page() {
    let app = spawn_app().await;
    for (path, heading) in [
        ("/clusters", "Clusters"),
        ("/restores", "Restores"),
        ("/audit", "Audit log"),
        ("/settings", "Settings"),
    ] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let html = res.text().await.unwrap().replace(HYDRATION_MARKER, "");
        assert!(
            html.contains(&format!("<h1>{heading}</h1>")),
            "{path}: {html}"
        );
        assert!(
            html.contains(&format!("href=\"{path}\" aria-current=\"page\"")),
            "{path}: the current section is marked in the navigation"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_address_is_a_404_page() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let html = res.text().await.unwrap().replace(HYDRATION_MARKER, "");
    assert!(html.contains("Page not found"));
    assert!(html.contains("data-test=\"not-found\""));
    // Still inside the shell, so the user can navigate away.
    assert!(html.contains("href=\"/clusters\""));
    app.stop().await;
}
