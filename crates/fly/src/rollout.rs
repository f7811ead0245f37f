//! Rolling a new secrets version out to an app's machines, as `fly secrets set` does
//! (flyctl `DeploySecrets` → restart-only deploy): for each machine, lease → get → update with its
//! own config and `min_secrets_version` → wait → release. Secrets reach a machine only when it is
//! updated (or started) after the change.

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
    /// How long to wait for each started machine to be `started` again.
    pub wait_deadline: Duration,
}

impl Default for RolloutOptions {
    fn default() -> Self {
        Self {
            lease_ttl_secs: 120,
            lease_description: "secrets rollout".into(),
            wait_deadline: Duration::from_secs(300),
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

impl FlyClient {
    /// Update every machine of `app` with its current config and `min_secrets_version = version`.
    /// Stopped machines stay stopped (`skip_launch`). Stops at the first failure; the steps done so
    /// far are returned either way.
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
            .acquire_lease(app, id, opts.lease_ttl_secs, Some(&opts.lease_description))
            .await?;
        let nonce = lease.nonce.ok_or_else(|| {
            Error::Protocol(format!("lease on machine {id} came back without a nonce"))
        })?;
        let result = async {
            let m = self.get_machine(app, id).await?;
            let config = m
                .config
                .clone()
                .ok_or_else(|| Error::Protocol(format!("machine {id} has no config to update")))?;
            let was_running = m.state == "started";
            let req = UpdateMachineRequest {
                config,
                name: None,
                region: None,
                min_secrets_version: Some(version),
                skip_launch: (!was_running).then_some(true),
                skip_secrets: None,
                current_version: m.instance_id.clone(),
            };
            let updated = self.update_machine(app, id, &req, Some(&nonce)).await?;
            if was_running {
                let what = WaitFor::state("started").version(updated.instance_id.clone());
                self.wait(app, id, &what, opts.wait_deadline).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = self.release_lease(app, id, &nonce).await {
            tracing::warn!(machine = id, error = %e, "could not release lease");
        }
        result
    }
}
