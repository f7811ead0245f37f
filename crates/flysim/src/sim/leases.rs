//! Machine leases: acquire (or refresh with the nonce), look up, release. Expiry is simulated time.

use super::machines::MAX_LEASE_TTL;
use super::{ApiError, ApiResult, Sim};
use crate::clock::{ms, rfc3339};
use crate::model::*;

impl Sim {
    /// The active lease of a live Machine (404 when there is none).
    pub(crate) fn get_lease(&self, caller: &Token, app: &str, id: &str) -> ApiResult<Lease> {
        let now = ms(self.now());
        let state = self.lock();
        let machine = state
            .visible_app(caller, app)?
            .machines
            .get(id)
            .filter(|m| !m.destroyed)
            .ok_or_else(|| ApiError::not_found(format!("machine not found: {id}")))?;
        machine
            .lease
            .clone()
            .filter(|lease| lease.expires_s * 1000 > now)
            .ok_or_else(|| ApiError::not_found(format!("no lease on machine {id}")))
    }

    /// Take a lease for `ttl_s` seconds, or refresh the held one when `given` is its nonce (409 otherwise).
    pub(crate) fn acquire_lease(
        &self,
        caller: &Token,
        app: &str,
        id: &str,
        given: Option<String>,
        ttl_s: i64,
        description: Option<String>,
    ) -> ApiResult<Lease> {
        if !(1..=MAX_LEASE_TTL).contains(&ttl_s) {
            return Err(ApiError::bad(format!(
                "invalid_argument: ttl must be between 1 and {MAX_LEASE_TTL} seconds"
            )));
        }
        let now = ms(self.now());
        let owner = caller.user.clone().unwrap_or_else(|| "flysim".into());
        self.with_visible_app(caller, app, |state| {
            let nonce = state.lease_nonce();
            let machine = state.machine_mut(app, id)?;
            let active = machine.lease.clone().filter(|l| l.expires_s * 1000 > now);
            let lease = match (active, given) {
                (Some(mut held), Some(nonce)) if nonce == held.nonce => {
                    held.expires_s = now / 1000 + ttl_s;
                    if let Some(description) = description {
                        held.description = description;
                    }
                    held
                }
                (Some(held), _) => {
                    return Err(ApiError::new(
                        409,
                        format!(
                            "lease currently held by {} until {} (machine {id})",
                            held.owner,
                            rfc3339(held.expires_s * 1000)
                        ),
                    ))
                }
                (None, _) => Lease {
                    nonce,
                    owner,
                    description: description.unwrap_or_default(),
                    expires_s: now / 1000 + ttl_s,
                    version: machine.instance_id.clone(),
                },
            };
            machine.lease = Some(lease.clone());
            Ok(lease)
        })
    }

    /// Release the lease; the nonce is required (400 without, 409 wrong, 404 with no live lease).
    pub(crate) fn release_lease(
        &self,
        caller: &Token,
        app: &str,
        id: &str,
        given: Option<String>,
    ) -> ApiResult<()> {
        let now = ms(self.now());
        let Some(given) = given else {
            return Err(ApiError::bad(
                "fly-machine-lease-nonce header is required to release a lease",
            ));
        };
        self.with_visible_app(caller, app, |state| {
            let machine = state.machine_mut(app, id)?;
            match machine.lease.as_ref().filter(|l| l.expires_s * 1000 > now) {
                Some(lease) if lease.nonce != given => Err(ApiError::new(
                    409,
                    format!("lease nonce mismatch on machine {id}"),
                )),
                Some(_) => {
                    machine.lease = None;
                    Ok(())
                }
                // flyctl `internal/command/postgres/failover.go` and `machine/leases.go` expect
                // " lease not found" once a lease expired or was released.
                None => {
                    machine.lease = None;
                    Err(ApiError::not_found(format!(
                        "failed to release lease for machine {id}: lease not found"
                    )))
                }
            }
        })
    }
}
