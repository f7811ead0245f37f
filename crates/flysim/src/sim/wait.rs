//! `wait`: block until a Machine reaches one of the wanted states, a replaced version counts as stopped,
//! or the deadline passes. On a manual clock a pending wait moves the clock to the next scheduled event
//! (or the deadline), like tokio's paused time.

use std::time::Duration;

use super::{ApiError, ApiResult, Sim};
use crate::clock::{ms, Clock};
use crate::model::*;

/// The states a wait accepts (`settled` = any resting state).
pub(crate) const WAIT_STATES: &[&str] = &[
    "started",
    "stopped",
    "suspended",
    "destroyed",
    "failed",
    "settled",
];

/// A validated wait.
pub(crate) struct WaitRequest {
    pub states: Vec<String>,
    pub timeout_s: i64,
    /// Wait on this version (`version` or `instance_id`): once replaced it counts as stopped.
    pub version: Option<String>,
}

/// A reached wait: the state and the version it was reached for, and the newest event's id.
pub(crate) struct WaitOutcome {
    pub state: String,
    pub version: String,
    pub event_id: String,
}

impl WaitRequest {
    /// Check the states and the timeout (`60`, `60s`; default 60; 1–60 s: the notes, and flaps, cap the
    /// wait at 60 s).
    pub(crate) fn new(
        mut states: Vec<String>,
        timeout: Option<&str>,
        version: Option<String>,
    ) -> ApiResult<Self> {
        if states.is_empty() {
            states.push("started".into());
        }
        if let Some(bad) = states.iter().find(|s| !WAIT_STATES.contains(&s.as_str())) {
            return Err(ApiError::bad(format!(
                "invalid_argument: invalid state {bad:?}; want one of {}",
                WAIT_STATES.join(", ")
            )));
        }
        let timeout_s = match timeout {
            None | Some("") => 60,
            Some(text) => {
                let text = text.trim_end_matches('s');
                text.parse::<i64>().map_err(|_| {
                    ApiError::bad(format!("invalid_argument: invalid timeout {text:?}"))
                })?
            }
        };
        if !(1..=60).contains(&timeout_s) {
            return Err(ApiError::bad(
                "invalid_argument: timeout must be between 1 and 60 seconds",
            ));
        }
        Ok(Self {
            states,
            timeout_s,
            version,
        })
    }

    /// The first wanted state `machine` is in, if any.
    fn reached(&self, machine: &Machine) -> Option<WaitOutcome> {
        let replaced = self
            .version
            .as_ref()
            .is_some_and(|version| *version != machine.instance_id);
        let wanted = self.states.iter().find(|wanted| match wanted.as_str() {
            // That version was replaced.
            "stopped" | "destroyed" if replaced => true,
            "settled" => machine.state.is_settled(),
            word => MachineState::parse(word) == Some(machine.state),
        })?;
        let state = if wanted == "settled" {
            machine.state.to_string()
        } else {
            wanted.clone()
        };
        Some(WaitOutcome {
            state,
            version: self
                .version
                .clone()
                .unwrap_or_else(|| machine.instance_id.clone()),
            event_id: machine
                .events
                .front()
                .map(|e| e.id.clone())
                .unwrap_or_default(),
        })
    }
}

impl Sim {
    pub(crate) async fn wait_machine(
        &self,
        caller: &Token,
        app: &str,
        id: &str,
        request: WaitRequest,
    ) -> ApiResult<WaitOutcome> {
        self.visible_machine_exists(caller, app, id)?;
        let deadline = ms(self.now()) + request.timeout_s * 1000;
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.tick();
            if let Some(outcome) = self.check_wait(app, id, &request, deadline)? {
                return Ok(outcome);
            }
            if let Some(manual) = &self.inner.manual {
                // Manual clock: jump to the next thing that can happen (or the deadline).
                let next = self.next_due().map(ms).unwrap_or(deadline).min(deadline);
                let by = (next - ms(manual.now())).max(0) as u64;
                self.advance(Duration::from_millis(by));
                continue;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
    }

    fn visible_machine_exists(&self, caller: &Token, app: &str, id: &str) -> ApiResult<()> {
        let state = self.lock();
        state
            .visible_app(caller, app)?
            .machines
            .get(id)
            .ok_or_else(|| ApiError::not_found(format!("machine not found: {id}")))?;
        Ok(())
    }

    /// One look: reached (`Some`), still waiting (`None`), or 408 at the deadline.
    fn check_wait(
        &self,
        app: &str,
        id: &str,
        request: &WaitRequest,
        deadline: i64,
    ) -> ApiResult<Option<WaitOutcome>> {
        let state = self.lock();
        let machine = state
            .app(app)?
            .machines
            .get(id)
            .ok_or_else(|| ApiError::not_found(format!("machine not found: {id}")))?;
        if let Some(outcome) = request.reached(machine) {
            return Ok(Some(outcome));
        }
        if ms(self.now()) >= deadline {
            return Err(ApiError::new(
                408,
                format!(
                    "deadline_exceeded: machine {id} did not reach state {} in {}s (current state: {})",
                    request.states.join(","),
                    request.timeout_s,
                    machine.state
                ),
            ));
        }
        Ok(None)
    }
}
