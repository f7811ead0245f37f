//! What can be done to a Machine once it exists: stop, start, restart, suspend, destroy, cordon, exec,
//! and its event list. Each checks the lease nonce and the current state, then moves the state machine.

use serde_json::json;

use super::machines::{check_lease, snapshot_secrets};
use super::{ApiError, ApiResult, Sim};
use crate::clock::ms;
use crate::exec::Out;
use crate::model::*;

/// Which signal-like action a simple state change is.
#[derive(Clone, Copy)]
pub(crate) enum Action {
    Restart,
    Suspend,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Suspend => "suspend",
        }
    }
}

fn unable(action: &str, state: MachineState) -> ApiError {
    ApiError::new(
        412,
        format!("failed_precondition: unable to {action} machine from current state: '{state}'"),
    )
}

impl Sim {
    /// Stop a running Machine (a no-op when it is already down).
    pub(crate) fn stop_machine(
        &self,
        caller: &Token,
        app: &str,
        id: &str,
        lease_nonce: Option<&str>,
    ) -> ApiResult<()> {
        let now = ms(self.now());
        let stop = self.timing().stop;
        self.with_visible_app(caller, app, |state| {
            let machine = state.machine_mut(app, id)?;
            check_lease(machine, lease_nonce, now)?;
            match machine.state {
                MachineState::Stopped
                | MachineState::Stopping
                | MachineState::Created
                | MachineState::Suspended => Ok(()),
                running if running.is_running() => {
                    state.push_event(app, id, "stop", "stopping", "user", now, json!({}));
                    crate::image::halted(state, app, id, now);
                    state.transition(
                        app,
                        id,
                        MachineState::Stopping,
                        MachineState::Stopped,
                        now,
                        stop,
                    )
                }
                other => Err(unable("stop", other)),
            }
        })
    }

    /// Start a stopped Machine with the app's current secrets; returns the state it was in.
    pub(crate) fn start_machine(
        &self,
        caller: &Token,
        app: &str,
        id: &str,
        lease_nonce: Option<&str>,
    ) -> ApiResult<MachineState> {
        let now = ms(self.now());
        let start = self.timing().start;
        self.with_visible_app(caller, app, |state| {
            let (secrets, secrets_version) = snapshot_secrets(state.app(app)?, None, false)?;
            let machine = state.machine_mut(app, id)?;
            check_lease(machine, lease_nonce, now)?;
            let previous = machine.state;
            match previous {
                MachineState::Stopped
                | MachineState::Created
                | MachineState::Suspended
                | MachineState::Failed => {
                    // Docs: staged secrets reach Machines that are started or updated after the change.
                    machine.secrets_env = secrets;
                    machine.secrets_version = secrets_version;
                    state.push_event(app, id, "start", "starting", "user", now, json!({}));
                    state.transition(
                        app,
                        id,
                        MachineState::Starting,
                        MachineState::Started,
                        now,
                        start,
                    )?;
                    Ok(previous)
                }
                other => Err(unable("start", other)),
            }
        })
    }

    /// Restart or suspend a started Machine.
    pub(crate) fn cycle_machine(
        &self,
        caller: &Token,
        app: &str,
        id: &str,
        lease_nonce: Option<&str>,
        action: Action,
    ) -> ApiResult<()> {
        let now = ms(self.now());
        let timing = self.timing().clone();
        self.with_visible_app(caller, app, |state| {
            let machine = state.machine_mut(app, id)?;
            check_lease(machine, lease_nonce, now)?;
            if machine.state != MachineState::Started {
                return Err(unable(action.word(), machine.state));
            }
            match action {
                Action::Restart => {
                    state.push_event(app, id, "restart", "restarting", "user", now, json!({}));
                    crate::image::halted(state, app, id, now);
                    state.transition(
                        app,
                        id,
                        MachineState::Restarting,
                        MachineState::Started,
                        now,
                        timing.start + timing.stop,
                    )
                }
                Action::Suspend => {
                    crate::image::halted(state, app, id, now);
                    state.transition(
                        app,
                        id,
                        MachineState::Suspending,
                        MachineState::Suspended,
                        now,
                        timing.stop,
                    )
                }
            }
        })
    }

    /// Destroy a Machine: it must be down unless `force`.
    pub(crate) fn destroy_machine(
        &self,
        caller: &Token,
        app: &str,
        id: &str,
        lease_nonce: Option<&str>,
        force: bool,
    ) -> ApiResult<()> {
        let now = ms(self.now());
        let stop = self.timing().stop;
        self.with_visible_app(caller, app, |state| {
            let machine = state.machine_mut(app, id)?;
            check_lease(machine, lease_nonce, now)?;
            if machine.state.is_running() && !force {
                return Err(ApiError::new(412, "failed_precondition: unable to destroy machine, not currently stopped, suspended or failed (use force=true)"));
            }
            crate::image::halted(state, app, id, now);
            state.transition(
                app,
                id,
                MachineState::Destroying,
                MachineState::Destroyed,
                now,
                stop,
            )
        })
    }

    pub(crate) fn set_cordoned(
        &self,
        caller: &Token,
        app: &str,
        id: &str,
        cordoned: bool,
    ) -> ApiResult<()> {
        self.with_visible_app(caller, app, |state| {
            state.machine_mut(app, id)?.cordoned = cordoned;
            Ok(())
        })
    }

    /// The newest `limit` events of a Machine.
    pub(crate) fn machine_events(
        &self,
        caller: &Token,
        app: &str,
        id: &str,
        limit: usize,
    ) -> ApiResult<Vec<Event>> {
        let state = self.lock();
        let machine = state
            .visible_app(caller, app)?
            .machines
            .get(id)
            .ok_or_else(|| ApiError::not_found(format!("machine not found: {id}")))?;
        Ok(machine.events.iter().take(limit).cloned().collect())
    }

    /// Run `argv` on a started Machine; the exec-deadline fault (or a command longer than the timeout)
    /// answers 408 after the command ran.
    pub(crate) fn exec(
        &self,
        caller: &Token,
        app: &str,
        id: &str,
        argv: &[String],
        stdin: &str,
        timeout_s: u64,
    ) -> ApiResult<Out> {
        let now = ms(self.now());
        let out = self.with_visible_app(caller, app, |state| {
            let machine = state.machine_mut(app, id)?;
            if machine.state != MachineState::Started {
                return Err(ApiError::new(
                    412,
                    format!(
                        "failed_precondition: machine {id} is not started (state {})",
                        machine.state
                    ),
                ));
            }
            let mut context = crate::image::ExecContext {
                state,
                sim: self,
                app: app.to_string(),
                machine: id.to_string(),
                now,
            };
            Ok(crate::exec::run(&mut context, argv, stdin, timeout_s))
        })?;
        self.changed();
        let injected = {
            let mut faults = self.faults();
            let rate = faults.cfg.exec_deadline_exceeded;
            faults.hit(rate)
        };
        if out.deadline || injected {
            return Err(ApiError::new(408, "deadline_exceeded: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"));
        }
        Ok(out)
    }
}
