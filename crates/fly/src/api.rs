//! Endpoint methods of [`FlyClient`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::client::{ambiguous, Call, FlyClient, Host, Idempotency};
use crate::error::Error;
use crate::ratelimit::GET_MACHINE;
use crate::types::*;

/// Fly caps one `wait` call at 60 seconds (docs; the document only says "default 60s").
pub const MAX_WAIT_SECONDS: u64 = 60;

/// What to wait for.
#[derive(Debug, Clone, Default)]
pub struct WaitFor {
    /// `started`, `stopped`, `suspended`, `destroyed`, `failed`, `settled`; empty means `started`.
    pub states: Vec<String>,
    /// The machine version (`instance_id`); docs: required when waiting for `stopped`.
    pub version: Option<String>,
    pub from_event_id: Option<String>,
}

impl WaitFor {
    pub fn state(state: &str) -> Self {
        Self {
            states: vec![state.to_string()],
            ..Self::default()
        }
    }

    pub fn version(mut self, version: Option<String>) -> Self {
        self.version = version;
        self
    }
}

impl FlyClient {
    // ------------------------------------------------------------ apps

    /// `GET /v1/apps?org_slug=`.
    pub async fn list_apps(&self, org_slug: &str) -> Result<ListAppsResponse, Error> {
        let call =
            Call::new(Method::GET, &["apps"], "list_apps", org_slug).query("org_slug", org_slug);
        self.send(&call).await?.decode()
    }

    /// `GET /v1/apps/{app}`.
    pub async fn get_app(&self, app: &str) -> Result<App, Error> {
        let call = Call::new(Method::GET, &["apps", app], "get_app", app);
        self.send(&call).await?.decode()
    }

    /// `POST /v1/apps?wait=true`, then wait until the app can be read (fly-go
    /// `flaps/flaps_apps.go::CreateApp` and `WaitForApp`, as flyctl `flypg/launcher.go::createApp`
    /// calls them): a new app is invisible for a short while on Fly, and the calls that follow
    /// (secrets, volumes, machines) would get 404.
    ///
    /// A 408/5xx/lost connection is ambiguous: the app is looked up by name, polling through the
    /// same invisible window, before the create is re-sent, so a transient 404 never leads to a
    /// second POST (which Fly answers 422 "Name has already been taken").
    pub async fn create_app(&self, req: &CreateAppRequest) -> Result<(), Error> {
        // The document gives 201 with no body; the docs show `{"id","created_at"}`: ignore it.
        let call = Call::new(Method::POST, &["apps"], "create_app", &req.org_slug)
            .query("wait", "true")
            .json(req)?;
        let name = req.name.clone();
        let seen = AtomicBool::new(false);
        let _: serde::de::IgnoredAny = self
            .create_once(&call, "app", &req.name, || async {
                match self.wait_for_app(&name).await {
                    Ok(_) => {
                        seen.store(true, Ordering::Relaxed);
                        Ok(Some(serde::de::IgnoredAny))
                    }
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await?;
        if !seen.load(Ordering::Relaxed) {
            self.wait_for_app(&name).await?;
        }
        Ok(())
    }

    /// Poll `GET /v1/apps/{app}` until it answers, retrying 404 and 401 (a new app and its
    /// permissions take a moment to appear) for up to the client's app visibility timeout
    /// (default one minute), with fly-go's delays (100 ms doubling to 500 ms). fly-go
    /// `flaps/flaps_apps.go::WaitForApp` and `flaps/retry.go::Retry`. Other errors end the wait.
    pub async fn wait_for_app(&self, app: &str) -> Result<App, Error> {
        let start = tokio::time::Instant::now();
        let mut delays = poll_delays();
        loop {
            let err = match self.get_app(app).await {
                Ok(found) => return Ok(found),
                Err(e) if matches!(e.status(), Some(404 | 401)) => e,
                Err(e) => return Err(e),
            };
            let delay = delays.next().unwrap_or(POLL_MAX_DELAY);
            if start.elapsed() + delay > self.inner.app_visibility_timeout {
                return Err(err);
            }
            tracing::debug!(app, error = %err, ?delay, "app not visible yet");
            tokio::time::sleep(delay).await;
        }
    }

    /// `DELETE /v1/apps/{app}` (`force=true` stops machines first; documented in Fly's docs, not in
    /// the OpenAPI document).
    pub async fn delete_app(&self, app: &str, force: bool) -> Result<(), Error> {
        let mut call = Call::new(Method::DELETE, &["apps", app], "delete_app", app);
        if force {
            call = call.query("force", "true");
        }
        self.send(&call).await.map(|_| ())
    }

    // ------------------------------------------------------------ machines

    /// `GET /v1/apps/{app}/machines` with filters.
    pub async fn list_machines(
        &self,
        app: &str,
        filter: &ListMachines,
    ) -> Result<Vec<Machine>, Error> {
        let mut call = Call::new(
            Method::GET,
            &["apps", app, "machines"],
            "list_machines",
            app,
        );
        if filter.include_deleted {
            call = call.query("include_deleted", "true");
        }
        if let Some(r) = &filter.region {
            call = call.query("region", r.clone());
        }
        if !filter.states.is_empty() {
            call = call.query("state", filter.states.join(","));
        }
        if filter.summary {
            call = call.query("summary", "true");
        }
        for (k, v) in &filter.metadata {
            call = call.query(&format!("metadata.{k}"), v.clone());
        }
        self.send(&call).await?.decode()
    }

    /// `GET /v1/apps/{app}/machines/{id}` (rate limit 5/s, burst 10).
    pub async fn get_machine(&self, app: &str, id: &str) -> Result<Machine, Error> {
        let call = Call::new(Method::GET, &["apps", app, "machines", id], GET_MACHINE, id);
        self.send(&call).await?.decode()
    }

    /// `POST /v1/apps/{app}/machines`. Ambiguous failures (408, 5xx, lost connection) are settled by
    /// listing the app's machines before retrying: a machine that was not there before the create
    /// and matches the request (name, or region+image when unnamed) is taken as the created one.
    pub async fn create_machine(
        &self,
        app: &str,
        req: &CreateMachineRequest,
    ) -> Result<Machine, Error> {
        let before: BTreeSet<String> = self
            .list_machines(app, &ListMachines::default())
            .await?
            .into_iter()
            .map(|m| m.id)
            .collect();
        let call = Call::new(
            Method::POST,
            &["apps", app, "machines"],
            "create_machine",
            app,
        )
        .json(req)?;
        let label = req.name.clone().unwrap_or_default();
        self.create_once(&call, "machine", &label, || async {
            let now = self.list_machines(app, &ListMachines::default()).await?;
            Ok(now.into_iter().find(|m| {
                !before.contains(&m.id)
                    && !m.is_gone()
                    && match &req.name {
                        Some(n) => &m.name == n,
                        None => {
                            req.region.as_ref().is_none_or(|r| &m.region == r)
                                && m.config.as_ref().and_then(|c| c.image.as_ref())
                                    == req.config.image.as_ref()
                        }
                    }
            }))
        })
        .await
    }

    /// `POST /v1/apps/{app}/machines/{id}`: replace the machine's config (send the FULL config).
    pub async fn update_machine(
        &self,
        app: &str,
        id: &str,
        req: &UpdateMachineRequest,
        nonce: Option<&str>,
    ) -> Result<Machine, Error> {
        let call = Call::new(
            Method::POST,
            &["apps", app, "machines", id],
            "update_machine",
            id,
        )
        .json(req)?
        .nonce(nonce)
        .timeout(Duration::from_secs(120));
        self.send(&call).await?.decode()
    }

    /// Update a machine the way `fly machine update` does (flyctl `internal/machine/update.go::Update`):
    /// send the update, wait for the new version to be `settled` (any resting state: a machine
    /// that was stopped stays stopped, so waiting for `started` could wait until the deadline),
    /// then read the machine back (flyctl `internal/machine/wait.go::WaitForState`). A machine
    /// that settles as `failed` is [`Error::MachineFailed`].
    pub async fn update_machine_and_settle(
        &self,
        app: &str,
        id: &str,
        req: &UpdateMachineRequest,
        nonce: Option<&str>,
        deadline: Duration,
    ) -> Result<Machine, Error> {
        let updated = self.update_machine(app, id, req, nonce).await?;
        let what = WaitFor::state("settled").version(updated.instance_id.clone());
        self.wait(app, id, &what, deadline).await?;
        let settled = self.get_machine(app, id).await?;
        if settled.state == "failed" {
            return Err(Error::MachineFailed {
                machine: id.to_string(),
            });
        }
        Ok(settled)
    }

    /// `POST …/stop`.
    pub async fn stop_machine(
        &self,
        app: &str,
        id: &str,
        req: &StopRequest,
        nonce: Option<&str>,
    ) -> Result<(), Error> {
        let call = Call::new(
            Method::POST,
            &["apps", app, "machines", id, "stop"],
            "stop",
            id,
        )
        .json(req)?
        .nonce(nonce)
        .idempotency(Idempotency::Idempotent);
        self.send(&call).await.map(|_| ())
    }

    /// `POST …/start`.
    pub async fn start_machine(
        &self,
        app: &str,
        id: &str,
        nonce: Option<&str>,
    ) -> Result<(), Error> {
        let call = Call::new(
            Method::POST,
            &["apps", app, "machines", id, "start"],
            "start",
            id,
        )
        .nonce(nonce)
        .idempotency(Idempotency::Idempotent);
        self.send(&call).await.map(|_| ())
    }

    /// `POST …/restart?timeout=&signal=` (timeout as a Go duration, e.g. `"30s"`).
    pub async fn restart_machine(
        &self,
        app: &str,
        id: &str,
        timeout: Option<&str>,
        signal: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<(), Error> {
        let mut call = Call::new(
            Method::POST,
            &["apps", app, "machines", id, "restart"],
            "restart",
            id,
        )
        .nonce(nonce);
        if let Some(t) = timeout {
            call = call.query("timeout", t);
        }
        if let Some(s) = signal {
            call = call.query("signal", s);
        }
        self.send(&call).await.map(|_| ())
    }

    /// `DELETE /v1/apps/{app}/machines/{id}[?force=true]`.
    pub async fn destroy_machine(
        &self,
        app: &str,
        id: &str,
        force: bool,
        nonce: Option<&str>,
    ) -> Result<(), Error> {
        let mut call = Call::new(
            Method::DELETE,
            &["apps", app, "machines", id],
            "destroy",
            id,
        )
        .nonce(nonce);
        if force {
            call = call.query("force", "true");
        }
        self.send(&call).await.map(|_| ())
    }

    /// One `GET …/wait` call (timeout capped at 60 s). A 408 is returned as an error.
    pub async fn wait_once(
        &self,
        app: &str,
        id: &str,
        what: &WaitFor,
        timeout_secs: u64,
    ) -> Result<WaitMachineResponse, Error> {
        let t = timeout_secs.clamp(1, MAX_WAIT_SECONDS);
        let mut call = Call::new(
            Method::GET,
            &["apps", app, "machines", id, "wait"],
            "wait",
            id,
        )
        .idempotency(Idempotency::Wait)
        .timeout(Duration::from_secs(t + 15))
        .query("timeout", t.to_string());
        if !what.states.is_empty() {
            call = call.query("state", what.states.join(","));
        }
        if let Some(v) = &what.version {
            call = call.query("version", v.clone());
        }
        if let Some(e) = &what.from_event_id {
            call = call.query("from_event_id", e.clone());
        }
        self.send(&call).await?.decode()
    }

    /// Wait until the machine reaches one of `what.states` or `deadline` passes, looping over
    /// ≤ 60 s `wait` calls (Fly answers 408 when one call times out).
    pub async fn wait(
        &self,
        app: &str,
        id: &str,
        what: &WaitFor,
        deadline: Duration,
    ) -> Result<WaitMachineResponse, Error> {
        let start = tokio::time::Instant::now();
        loop {
            let remaining = deadline.saturating_sub(start.elapsed());
            if remaining.is_zero() {
                return Err(Error::WaitTimeout {
                    machine: id.to_string(),
                    state: wanted(what),
                });
            }
            let secs = remaining.as_secs_f64().ceil() as u64;
            match self.wait_once(app, id, what, secs).await {
                Ok(r) => return Ok(r),
                Err(e) if e.status() == Some(408) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// `POST …/exec` with an argv array. Checks `exit_code`: a non-zero exit (Fly still answers
    /// 200) is [`Error::ExecFailed`]. Exec is not idempotent: only 429 and connection failures are
    /// retried.
    pub async fn exec(&self, app: &str, id: &str, req: &ExecRequest) -> Result<ExecOutput, Error> {
        let out = self.exec_unchecked(app, id, req).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(Error::ExecFailed {
                machine: id.to_string(),
                program: req.command.first().cloned().unwrap_or_default(),
                exit_code: out.exit_code,
                exit_signal: out.exit_signal,
                output: Box::new(out),
            })
        }
    }

    /// `POST …/exec` returning the output whatever the exit code.
    pub async fn exec_unchecked(
        &self,
        app: &str,
        id: &str,
        req: &ExecRequest,
    ) -> Result<ExecOutput, Error> {
        if req.command.is_empty() {
            return Err(Error::Config("exec: empty command".into()));
        }
        let call = Call::new(
            Method::POST,
            &["apps", app, "machines", id, "exec"],
            "exec",
            id,
        )
        .json(req)?
        .timeout(Duration::from_secs(req.timeout.unwrap_or(30) + 30));
        self.send(&call).await?.decode()
    }

    /// `GET …/events?limit=` (Fly: default 20, max 50).
    pub async fn machine_events(
        &self,
        app: &str,
        id: &str,
        limit: Option<u32>,
    ) -> Result<Vec<MachineEvent>, Error> {
        let mut call = Call::new(
            Method::GET,
            &["apps", app, "machines", id, "events"],
            "events",
            id,
        );
        if let Some(l) = limit {
            call = call.query("limit", l.min(50).to_string());
        }
        self.send(&call).await?.decode()
    }

    /// `GET …/metadata`.
    pub async fn get_metadata(
        &self,
        app: &str,
        id: &str,
    ) -> Result<BTreeMap<String, String>, Error> {
        let call = Call::new(
            Method::GET,
            &["apps", app, "machines", id, "metadata"],
            "get_metadata",
            id,
        );
        let v: Option<BTreeMap<String, String>> = self.send(&call).await?.decode()?;
        Ok(v.unwrap_or_default())
    }

    /// `GET …/metadata/{key}`; `None` when the key is absent (404).
    pub async fn get_metadata_key(
        &self,
        app: &str,
        id: &str,
        key: &str,
    ) -> Result<Option<String>, Error> {
        let call = Call::new(
            Method::GET,
            &["apps", app, "machines", id, "metadata", key],
            "get_metadata",
            id,
        );
        match self.send(&call).await {
            Ok(r) => Ok(r.decode::<MetadataValue>()?.value),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST …/metadata/{key}` `{"value": …}` (an upsert; safe to repeat).
    pub async fn set_metadata(
        &self,
        app: &str,
        id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), Error> {
        let call = Call::new(
            Method::POST,
            &["apps", app, "machines", id, "metadata", key],
            "set_metadata",
            id,
        )
        .json(&serde_json::json!({ "value": value }))?
        .idempotency(Idempotency::Idempotent);
        self.send(&call).await.map(|_| ())
    }

    /// `DELETE …/metadata/{key}`.
    pub async fn delete_metadata(&self, app: &str, id: &str, key: &str) -> Result<(), Error> {
        let call = Call::new(
            Method::DELETE,
            &["apps", app, "machines", id, "metadata", key],
            "set_metadata",
            id,
        );
        self.send(&call).await.map(|_| ())
    }

    // ------------------------------------------------------------ leases

    /// `POST …/lease` `{ttl, description}`: acquire a lease (409 when someone else holds it).
    pub async fn acquire_lease(
        &self,
        app: &str,
        id: &str,
        ttl_secs: u64,
        description: Option<&str>,
    ) -> Result<Lease, Error> {
        let req = CreateLeaseRequest {
            description: description.map(str::to_string),
            ttl: Some(ttl_secs),
        };
        let call = Call::new(
            Method::POST,
            &["apps", app, "machines", id, "lease"],
            "lease",
            id,
        )
        .json(&req)?;
        self.send(&call).await?.decode()
    }

    /// Acquire a lease, retrying while someone else holds it (409, also when the holder is
    /// "Fly.io system") for up to `patience`, with fly-go's delays (100 ms doubling to 500 ms).
    /// fly-go `flaps/flaps_machines.go::AcquireLease` retries through `flaps/retry.go::Retry` for
    /// up to one minute. Other errors are returned at once.
    pub async fn acquire_lease_waiting(
        &self,
        app: &str,
        id: &str,
        ttl_secs: u64,
        description: Option<&str>,
        patience: Duration,
    ) -> Result<Lease, Error> {
        let start = tokio::time::Instant::now();
        let mut delays = poll_delays();
        loop {
            let err = match self.acquire_lease(app, id, ttl_secs, description).await {
                Ok(lease) => return Ok(lease),
                Err(e) if e.is_conflict() => e,
                Err(e) => return Err(e),
            };
            let delay = delays.next().unwrap_or(POLL_MAX_DELAY);
            if start.elapsed() + delay > patience {
                return Err(err);
            }
            tracing::debug!(machine = id, error = %err, ?delay, "lease held; waiting");
            tokio::time::sleep(delay).await;
        }
    }

    /// `POST …/lease` with the nonce header: extend a held lease (fly-go
    /// `flaps/flaps_machines.go::RefreshLease`).
    pub async fn refresh_lease(
        &self,
        app: &str,
        id: &str,
        nonce: &str,
        ttl_secs: u64,
    ) -> Result<Lease, Error> {
        let req = CreateLeaseRequest {
            description: None,
            ttl: Some(ttl_secs),
        };
        let call = Call::new(
            Method::POST,
            &["apps", app, "machines", id, "lease"],
            "lease",
            id,
        )
        .json(&req)?
        .nonce(Some(nonce))
        .idempotency(Idempotency::Idempotent);
        self.send(&call).await?.decode()
    }

    /// `GET …/lease`; `None` when no lease is held (404).
    pub async fn get_lease(&self, app: &str, id: &str) -> Result<Option<Lease>, Error> {
        let call = Call::new(
            Method::GET,
            &["apps", app, "machines", id, "lease"],
            "get_lease",
            id,
        );
        match self.send(&call).await {
            Ok(r) => r.decode().map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `DELETE …/lease` with the (required) nonce header.
    pub async fn release_lease(&self, app: &str, id: &str, nonce: &str) -> Result<(), Error> {
        let call = Call::new(
            Method::DELETE,
            &["apps", app, "machines", id, "lease"],
            "lease",
            id,
        )
        .nonce(Some(nonce));
        self.send(&call).await.map(|_| ())
    }

    // ------------------------------------------------------------ volumes

    /// `GET /v1/apps/{app}/volumes`.
    pub async fn list_volumes(&self, app: &str) -> Result<Vec<Volume>, Error> {
        let call = Call::new(Method::GET, &["apps", app, "volumes"], "list_volumes", app);
        self.send(&call).await?.decode()
    }

    /// `POST /v1/apps/{app}/volumes`. Volume names are not unique, so an ambiguous failure is
    /// settled by comparing the volume list with the one taken just before the create.
    pub async fn create_volume(
        &self,
        app: &str,
        req: &CreateVolumeRequest,
    ) -> Result<Volume, Error> {
        let before: BTreeSet<String> = self
            .list_volumes(app)
            .await?
            .into_iter()
            .map(|v| v.id)
            .collect();
        let call = Call::new(
            Method::POST,
            &["apps", app, "volumes"],
            "create_volume",
            app,
        )
        .json(req)?;
        self.create_once(&call, "volume", &req.name, || async {
            let now = self.list_volumes(app).await?;
            Ok(now.into_iter().find(|v| {
                !before.contains(&v.id)
                    && !v.is_destroyed()
                    && v.name == req.name
                    && v.region.as_deref().is_none_or(|r| r == req.region)
            }))
        })
        .await
    }

    /// `DELETE /v1/apps/{app}/volumes/{id}`.
    pub async fn delete_volume(&self, app: &str, id: &str) -> Result<Volume, Error> {
        let call = Call::new(
            Method::DELETE,
            &["apps", app, "volumes", id],
            "delete_volume",
            id,
        );
        let v: Option<Volume> = self.send(&call).await?.decode()?;
        Ok(v.unwrap_or_default())
    }

    // ------------------------------------------------------------ secrets

    /// `POST /v1/apps/{app}/secrets` `{"values": {NAME: value | null}}`: set and unset (None) in one
    /// call; returns the new secrets version. Setting the same values again is harmless, so the
    /// call is retried like an idempotent one.
    pub async fn update_secrets(
        &self,
        app: &str,
        values: &BTreeMap<String, Option<SecretString>>,
    ) -> Result<u64, Error> {
        let mut map = Map::new();
        for (k, v) in values {
            map.insert(
                k.clone(),
                v.as_ref().map_or(Value::Null, |s| {
                    Value::String(s.expose_secret().to_string())
                }),
            );
        }
        let mut body = serde_json::json!({ "values": Value::Object(map) });
        let call = Call::new(Method::POST, &["apps", app, "secrets"], "secrets", app)
            .json(&body)?
            .idempotency(Idempotency::Idempotent);
        zeroize_json(&mut body);
        let resp: AppSecretsUpdateResp = self.send(&call).await?.decode()?;
        let version = resp.version.or(resp.legacy_version).ok_or_else(|| {
            Error::Protocol(format!(
                "secrets update for app {app}: response has no version"
            ))
        })?;
        self.inner.note_secrets_version(app, version);
        Ok(version)
    }

    /// `GET /v1/apps/{app}/secrets`: names and digests, never values. Secrets are eventually
    /// consistent on Fly, so like flyctl `internal/appsecrets/secrets.go::List` this asks for at
    /// least the newest version this client set for the app ([`Self::secrets_min_version`]).
    pub async fn list_secrets(&self, app: &str) -> Result<Vec<AppSecret>, Error> {
        let min_version = self.inner.secrets_min_version(app);
        self.list_secrets_min_version(app, min_version).await
    }

    /// `GET /v1/apps/{app}/secrets?min_version=`: names and digests of at least that secrets
    /// version (the version [`Self::update_secrets`] returned). The parameter is the OpenAPI
    /// document's `min_version`; fly-go `flaps/flaps_secrets.go::ListAppSecrets` sends the same
    /// number as `version`.
    pub async fn list_secrets_min_version(
        &self,
        app: &str,
        min_version: Option<u64>,
    ) -> Result<Vec<AppSecret>, Error> {
        let mut call = Call::new(Method::GET, &["apps", app, "secrets"], "list_secrets", app);
        if let Some(version) = min_version {
            call = call.query("min_version", version.to_string());
        }
        let s: AppSecrets = self.send(&call).await?.decode()?;
        Ok(s.secrets)
    }

    /// `GET /v1/apps/{app}/secrets?show_secrets=true`: names, digests and values (the OpenAPI
    /// document's `show_secrets`, "Show the secret values"). Which permission a token needs for the
    /// values is not documented (fly-platform.md §6); a secret whose value Fly leaves out has
    /// `value: None`. Values are decoded straight into [`SecretString`]s.
    pub async fn list_secrets_with_values(&self, app: &str) -> Result<Vec<AppSecret>, Error> {
        let mut call = Call::new(Method::GET, &["apps", app, "secrets"], "list_secrets", app)
            .query("show_secrets", "true");
        if let Some(version) = self.inner.secrets_min_version(app) {
            call = call.query("min_version", version.to_string());
        }
        let s: AppSecrets = self.send(&call).await?.decode()?;
        Ok(s.secrets)
    }

    /// The newest secrets version this client set for `app` with [`Self::update_secrets`]
    /// (flyctl `internal/appsecrets/minvers.go`), to pass as `min_secrets_version`.
    pub fn secrets_min_version(&self, app: &str) -> Option<u64> {
        self.inner.secrets_min_version(app)
    }

    // ------------------------------------------------------------ tokens, logs

    /// `GET /v1/tokens/current`: what the configured token may reach.
    pub async fn current_token(&self) -> Result<CurrentTokenResponse, Error> {
        let call = Call::new(Method::GET, &["tokens", "current"], "tokens_current", "");
        self.send(&call).await?.decode()
    }

    /// `GET {FLY_API_HOSTNAME}/api/v1/apps/{app}/logs?next_token=&instance=&region=` (unofficial but
    /// stable; flyctl uses it). Pass the returned `next_token` back to page/tail.
    pub async fn logs(
        &self,
        app: &str,
        next_token: Option<&str>,
        instance: Option<&str>,
        region: Option<&str>,
    ) -> Result<LogsPage, Error> {
        let mut call = Call::new(
            Method::GET,
            &["api", "v1", "apps", app, "logs"],
            "logs",
            app,
        )
        .host(Host::Api);
        for (k, v) in [
            ("next_token", next_token),
            ("instance", instance),
            ("region", region),
        ] {
            if let Some(v) = v {
                call = call.query(k, v);
            }
        }
        let wire: LogsWire = self.send(&call).await?.decode()?;
        Ok(wire.into())
    }

    // ------------------------------------------------------------ helpers

    /// Send a create at most once per confirmed non-existence: on an ambiguous failure, `lookup`
    /// decides whether the object exists (done) or not (safe to send again).
    async fn create_once<T, F, Fut>(
        &self,
        call: &Call,
        kind: &'static str,
        name: &str,
        lookup: F,
    ) -> Result<T, Error>
    where
        T: serde::de::DeserializeOwned,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, Error>>,
    {
        let mut delays = self.inner.retry_delays();
        loop {
            let err = match self.send(call).await {
                Ok(reply) => return reply.decode(),
                Err(e) if ambiguous(&e) => e,
                Err(e) => return Err(e),
            };
            tracing::warn!(kind, error = %err, "ambiguous create; looking before retrying");
            let unknown = |cause: &Error| Error::AmbiguousCreate {
                kind,
                app: call.resource.clone(),
                name: (!name.is_empty()).then(|| name.to_string()),
                cause: cause.to_string(),
            };
            match lookup().await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                Err(_) => return Err(unknown(&err)),
            }
            match delays.next() {
                Some(d) => tokio::time::sleep(d).await,
                None => return Err(unknown(&err)),
            }
        }
    }
}

/// The longest pause between two polls (fly-go `flaps/retry.go`: `MaxInterval`).
const POLL_MAX_DELAY: Duration = Duration::from_millis(500);

/// fly-go `flaps/retry.go::Retry` delays: 100 ms doubling up to 500 ms, jittered, unbounded in
/// number (the caller bounds the elapsed time).
fn poll_delays() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(POLL_MAX_DELAY)
        .without_max_times()
        .build()
}

fn wanted(what: &WaitFor) -> String {
    if what.states.is_empty() {
        "started".into()
    } else {
        what.states.join(",")
    }
}

fn zeroize_json(v: &mut Value) {
    use zeroize::Zeroize;
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(zeroize_json),
        Value::Object(o) => o.values_mut().for_each(zeroize_json),
        _ => {}
    }
}
