//! Discovering the Postgres clusters of a Fly organisation: the apps that run the Stolon image, their
//! machines and the role each machine reports.
//!
//! [`Clusters`] is the service [`crate::Walden`] hands out; it owns the Fly connection, so nothing outside
//! this crate needs a Fly client to list clusters.

use fly::{stolon, FlyClient, ListMachines};
use serde::{Deserialize, Serialize};

/// One machine of a cluster, as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineSummary {
    pub id: String,
    pub name: String,
    pub region: String,
    pub state: String,
    /// `leader`, `replica`, `readonly`, or `unknown` when the role check is not passing.
    pub role: String,
    pub image: String,
}

/// A Fly app running Postgres.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSummary {
    pub app: String,
    pub status: String,
    pub machines: Vec<MachineSummary>,
}

impl MachineSummary {
    /// What the console shows of a Fly machine: its role from the Stolon role check, its image from its config
    /// (or the image reference Fly reports).
    pub fn of(m: &fly::Machine) -> Self {
        MachineSummary {
            id: m.id.clone(),
            name: m.name.clone(),
            region: m.region.clone(),
            state: m.state.clone(),
            role: stolon::role(m).to_string(),
            image: m.image().unwrap_or_default(),
        }
    }
}

impl ClusterSummary {
    /// The machine that reports itself leader, when exactly one does.
    pub fn leader(&self) -> Option<&MachineSummary> {
        let mut leaders = self.machines.iter().filter(|m| m.role == "leader");
        match (leaders.next(), leaders.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }
}

/// Why discovery failed. The Fly error keeps its status and request id for the log; the message is plain.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("the Fly API refused or failed the request: {0}")]
    Fly(#[from] fly::Error),
    #[error("no Fly organisation is configured")]
    NotConfigured,
}

/// How Walden reaches Fly: a client (the real API or the emulator) and the organisation it watches.
#[derive(Clone, Debug)]
pub struct FlyConnection {
    pub client: FlyClient,
    pub org: String,
}

/// The clusters as a service of [`crate::Walden`]. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Clusters {
    fly: Option<FlyConnection>,
}

impl Clusters {
    /// Without a connection (the CLI's user and audit commands) listing fails with
    /// [`DiscoverError::NotConfigured`].
    pub fn new(fly: Option<FlyConnection>) -> Self {
        Clusters { fly }
    }

    /// The watched organisation, when there is a connection.
    pub fn org(&self) -> Option<&str> {
        self.fly.as_ref().map(|f| f.org.as_str())
    }

    /// The Postgres clusters of the watched organisation (see [`discover`]).
    #[tracing::instrument(skip_all, fields(org = self.org()), err(level = "debug"))]
    pub async fn list(&self) -> Result<Vec<ClusterSummary>, DiscoverError> {
        let fly = self.fly.as_ref().ok_or(DiscoverError::NotConfigured)?;
        discover(&fly.client, &fly.org).await
    }
}

/// Whether an image is one of Fly's Postgres images (Stolon `flyio/postgres` or `flyio/postgres-flex`).
pub fn is_postgres_image(image: &str) -> bool {
    let repository = image.split(['@', ':']).next().unwrap_or(image);
    let repository = repository
        .strip_prefix("registry-1.docker.io/")
        .or_else(|| repository.strip_prefix("docker.io/"))
        .unwrap_or(repository);
    repository == "flyio/postgres" || repository == "flyio/postgres-flex"
}

/// The Postgres clusters of `org`, sorted by app name, machines sorted by name.
pub async fn discover(client: &FlyClient, org: &str) -> Result<Vec<ClusterSummary>, DiscoverError> {
    let apps = client.list_apps(org).await?.apps;
    let mut clusters = Vec::new();
    for app in apps {
        let machines = client
            .list_machines(&app.name, &ListMachines::default())
            .await?;
        let machines: Vec<MachineSummary> = machines.iter().map(MachineSummary::of).collect();
        if machines.iter().any(|m| is_postgres_image(&m.image)) {
            let mut machines = machines;
            machines.sort_by(|a, b| a.name.cmp(&b.name));
            clusters.push(ClusterSummary {
                app: app.name,
                status: app.status.unwrap_or_else(|| "unknown".into()),
                machines,
            });
        }
    }
    clusters.sort_by(|a, b| a.app.cmp(&b.app));
    Ok(clusters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_fly_postgres_images() {
        assert!(is_postgres_image("flyio/postgres:15"));
        assert!(is_postgres_image("flyio/postgres:14.6@sha256:abc"));
        assert!(is_postgres_image("registry-1.docker.io/flyio/postgres:15"));
        assert!(is_postgres_image("flyio/postgres-flex:16"));
        assert!(!is_postgres_image("flyio/postgres-exporter:1"));
        assert!(!is_postgres_image("library/postgres:16"));
        assert!(!is_postgres_image(""));
    }

    /// The service, with the real client, against the emulator's demo org over loopback HTTP.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn discovers_the_demo_cluster_with_one_leader() {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        let (running, info) = flysim::start_demo(listener, dir.path().join("bucket"), None, cancel)
            .await
            .unwrap();
        let client = FlyClient::builder()
            .token(info.token.clone().into())
            .machines_base_url(running.base_url.clone())
            .api_base_url(running.base_url.clone())
            .build()
            .unwrap();
        // An app without Postgres machines in the same org is not a cluster.
        client
            .create_app(&fly::CreateAppRequest {
                name: "walden-web".into(),
                org_slug: info.org.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        let service = Clusters::new(Some(FlyConnection {
            client,
            org: info.org.clone(),
        }));
        assert_eq!(service.org(), Some(info.org.as_str()));
        let clusters = service.list().await.unwrap();
        assert_eq!(clusters.len(), 1, "{clusters:?}");
        let demo = &clusters[0];
        assert_eq!(demo.app, info.app);
        assert_eq!(demo.machines.len(), info.machines.len());
        assert!(demo.leader().is_some(), "one leader: {demo:?}");
        assert_eq!(
            demo.machines.iter().filter(|m| m.role == "replica").count(),
            demo.machines.len() - 1
        );
        running.shutdown().await.unwrap();
    }
}
