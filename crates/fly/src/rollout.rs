//! Rolling a new secrets version out to an app's machines, as `fly secrets set` does
//! (flyctl `DeploySecrets` → restart-only deploy): for each machine, lease → get → update with its
//! own config and `min_secrets_version` → wait → release. Secrets reach a machine only when it is
//! updated (or started) after the change.
//!
//! Invariants, as flyctl's:
//! * Relaunch rule (flyctl `internal/command/deploy/machines_launchinput.go::shouldSkipLaunch`):
//!   a machine that was `started`, `starting` or `failed` is launched by the update and waited
//!   for (`started`, the new version); any other (stopped, suspended, created) is updated with
//!   `skip_launch` and stays as it was, not waited for (`waitForMachine` skips it).
//! * The lease is taken with [`FlyClient::acquire_lease_waiting`] (a held lease, even Fly's own,
//!   is waited out for a bounded time) and refreshed in the background every (TTL − 1 s) / 3 while
//!   the machine is updated and waited for (flyctl `internal/machine/leasable_machine.go::
//!   refreshLeaseUntilCanceled`, `internal/command/deploy/machines.go`), so it cannot lapse mid-step.

use std::future::Future;
use std::time::Duration;

use crate::api::WaitFor;
use crate::client::FlyClient;
use crate::error::Error;
use crate::types::{ListMachines, Machine, UpdateMachineRequest};

/// Options for [`FlyClient::rollout_secrets`].
#[derive(Debug, Clone)]
pub struct RolloutOptions {
    pub lease_ttl_secs: u64,
    pub lease_description: String,
    /// How long to wait for each launched machine to be `started` again.
    pub wait_deadline: Duration,
    /// How long to wait for a lease someone else holds (fly-go `AcquireLease`: one minute).
    pub lease_patience: Duration,
    /// How often to refresh the lease during a step; `None`: every (TTL − 1 s) / 3 like flyctl.
    pub lease_refresh_every: Option<Duration>,
}

impl RolloutOptions {
    /// The pause between two lease refreshes.
    fn refresh_every(&self) -> Duration {
        self.lease_refresh_every.unwrap_or_else(|| {
            Duration::from_secs(self.lease_ttl_secs)
                .saturating_sub(Duration::from_secs(1))
                .max(Duration::from_secs(1))
                / 3
        })
    }
}

impl Default for RolloutOptions {
    fn default() -> Self {
        Self {
            lease_ttl_secs: 120,
            lease_description: "secrets rollout".into(),
            wait_deadline: Duration::from_secs(300),
            lease_patience: Duration::from_secs(60),
            lease_refresh_every: None,
        }
    }
}

/// What happened to one machine.
#[derive(Debug)]
pub struct RolloutStep {
    pub machine_id: String,
    pub previous_state: String,
    pub result: Result<(), Error>,
}

/// Leaders last, replicas first (limits failovers); by role check output `leader`/`primary`.
fn rollout_order(mut machines: Vec<Machine>) -> Vec<Machine> {
    machines.retain(|m| !m.is_gone());
    machines.sort_by_key(|m| {
        let role = m
            .check("role")
            .filter(|c| c.status.as_deref() == Some("passing"))
            .and_then(|c| c.output.as_deref())
            .map(str::trim)
            .unwrap_or("");
        (matches!(role, "leader" | "primary"), m.id.clone())
    });
    machines
}

/// Whether an update must leave the machine as it is instead of launching it (flyctl
/// `shouldSkipLaunch`: launch only what was `started`, `starting` or `failed`).
pub fn should_skip_launch(state: &str) -> bool {
    !matches!(state, "started" | "starting" | "failed")
}

/// A type with no values: what a loop that never ends returns.
enum Never {}

impl FlyClient {
    /// Update every machine of `app` with its current config and `min_secrets_version = version`.
    /// Stopped machines stay stopped (`skip_launch`, see [`should_skip_launch`]). Stops at the
    /// first failure; the steps done so far are returned either way.
    pub async fn rollout_secrets(
        &self,
        app: &str,
        version: u64,
        opts: &RolloutOptions,
    ) -> Result<Vec<RolloutStep>, Error> {
        let machines = rollout_order(self.list_machines(app, &ListMachines::default()).await?);
        let mut steps = Vec::new();
        for m in machines {
            let result = self.update_one(app, &m.id, version, opts).await;
            let failed = result.is_err();
            steps.push(RolloutStep {
                machine_id: m.id.clone(),
                previous_state: m.state.clone(),
                result,
            });
            if failed {
                break;
            }
        }
        Ok(steps)
    }

    async fn update_one(
        &self,
        app: &str,
        id: &str,
        version: u64,
        opts: &RolloutOptions,
    ) -> Result<(), Error> {
        let lease = self
            .acquire_lease_waiting(
                app,
                id,
                opts.lease_ttl_secs,
                Some(&opts.lease_description),
                opts.lease_patience,
            )
            .await?;
        let nonce = lease.nonce.ok_or_else(|| {
            Error::Protocol(format!("lease on machine {id} came back without a nonce"))
        })?;
        let step = self.update_and_wait(app, id, version, &nonce, opts);
        let result = self.with_lease_refreshed(app, id, &nonce, opts, step).await;
        if let Err(e) = self.release_lease(app, id, &nonce).await {
            tracing::warn!(machine = id, error = %e, "could not release lease");
        }
        result
    }

    /// Get → update with the machine's own config → wait for `started` when it is relaunched.
    async fn update_and_wait(
        &self,
        app: &str,
        id: &str,
        version: u64,
        nonce: &str,
        opts: &RolloutOptions,
    ) -> Result<(), Error> {
        let m = self.get_machine(app, id).await?;
        let config = m
            .config
            .clone()
            .ok_or_else(|| Error::Protocol(format!("machine {id} has no config to update")))?;
        let skip_launch = should_skip_launch(&m.state);
        let req = UpdateMachineRequest {
            config,
            name: None,
            region: None,
            min_secrets_version: Some(version),
            skip_launch: skip_launch.then_some(true),
            skip_secrets: None,
            current_version: m.instance_id.clone(),
        };
        let updated = self.update_machine(app, id, &req, Some(nonce)).await?;
        if !skip_launch {
            let what = WaitFor::state("started").version(updated.instance_id.clone());
            self.wait(app, id, &what, opts.wait_deadline).await?;
        }
        Ok(())
    }

    /// Run `step` while refreshing the lease in the background; the refresher stops with it.
    async fn with_lease_refreshed<T>(
        &self,
        app: &str,
        id: &str,
        nonce: &str,
        opts: &RolloutOptions,
        step: impl Future<Output = T>,
    ) -> T {
        let refresher = self.keep_lease_fresh(app, id, nonce, opts);
        tokio::select! {
            biased;
            done = step => done,
            never = refresher => match never {},
        }
    }

    /// Refresh the lease every [`RolloutOptions::refresh_every`]; failures are logged and the
    /// next refresh tried (flyctl warns and carries on).
    async fn keep_lease_fresh(
        &self,
        app: &str,
        id: &str,
        nonce: &str,
        opts: &RolloutOptions,
    ) -> Never {
        let every = opts.refresh_every();
        loop {
            tokio::time::sleep(every).await;
            match self
                .refresh_lease(app, id, nonce, opts.lease_ttl_secs)
                .await
            {
                Ok(lease) if lease.nonce.as_deref().is_some_and(|n| n != nonce) => {
                    tracing::warn!(machine = id, "lease refresh returned a different nonce");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(machine = id, error = %e, "could not refresh lease"),
            }
        }
    }
}
