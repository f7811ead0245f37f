//! Scheduled work: transient states settling, boots becoming ready, crashes, PITR steps, archiving and
//! detached backups. Timers run in time order (then creation order); each is handed to its owner.

use serde_json::json;

use super::{ApiError, ApiResult, Sim};
use crate::clock::rfc3339;
use crate::model::*;

impl State {
    /// Run every timer due at or before `now`, earliest first (a timer may schedule more). Returns
    /// whether anything ran.
    pub(crate) fn run_due(&mut self, now: i64, sim: &Sim) -> bool {
        let mut ran = false;
        while let Some(index) = self.next_due(now) {
            let timer = self.timers.swap_remove(index);
            ran = true;
            self.fire(timer, sim);
        }
        ran
    }

    /// The index of the earliest timer due at or before `now` (ties in creation order).
    fn next_due(&self, now: i64) -> Option<usize> {
        self.timers
            .iter()
            .enumerate()
            .filter(|(_, timer)| timer.at_ms <= now)
            .min_by_key(|(_, timer)| (timer.at_ms, timer.seq))
            .map(|(index, _)| index)
    }

    fn fire(&mut self, timer: Timer, sim: &Sim) {
        let at = timer.at_ms;
        let app = timer.app;
        match timer.kind {
            TimerKind::Settle { machine, gen, to } => self.settle(&app, &machine, gen, to, at, sim),
            TimerKind::Ready { machine, gen } => crate::image::ready(self, &app, &machine, gen, at),
            TimerKind::Crash { machine, gen } => {
                let current = self
                    .machine_any_mut(&app, &machine)
                    .is_ok_and(|member| member.gen == gen);
                if current {
                    let _ = self.exit_and_restart(&app, &machine, at, 2, false, sim);
                }
            }
            TimerKind::Checks { machine, run_loop } => {
                self.run_checks(&app, &machine, run_loop, at)
            }
            kind @ (TimerKind::Pitr { .. }
            | TimerKind::Archive
            | TimerKind::BackupDone { .. }
            | TimerKind::Failover { .. }) => {
                crate::image::cluster_timer(self, &app, kind, at, sim);
            }
        }
    }

    /// A transient state ends in `to` (unless the Machine moved on since: `gen`).
    fn settle(&mut self, app: &str, machine: &str, gen: u64, to: MachineState, at: i64, sim: &Sim) {
        let Ok(member) = self.machine_any_mut(app, machine) else {
            return;
        };
        if member.gen != gen {
            return;
        }
        let cannot_launch = to == MachineState::Started && {
            let faults = sim.faults();
            faults.cfg.launch_fails.contains(machine)
                || faults.cfg.launch_fails.contains(&member.name)
        };
        if cannot_launch {
            member.state = MachineState::Failed;
            member.updated_ms = at;
            member.gen += 1;
            // The event's shape is not documented; flyctl reads only the Machine's state.
            let failure = json!({"error": "failed to launch VM"});
            self.push_event(app, machine, "launch", "failed", "flyd", at, failure);
            return;
        }
        member.state = to;
        member.updated_ms = at;
        member.gen += 1;
        let no_request = json!({});
        match to {
            MachineState::Started => {
                self.push_event(app, machine, "start", "started", "flyd", at, no_request);
                crate::image::boot(self, app, machine, at, sim);
                // The checks run as the Machine starts (Postgres is not up yet) and on their interval after.
                self.start_checks(app, machine, at, 0);
            }
            MachineState::Stopped => {
                let exit = json!({"exit_event": {"exit_code": 0, "guest_exit_code": 0, "signal": -1,
                    "oom_killed": false, "requested_stop": true, "restarting": false,
                    "exited_at": rfc3339(at)}});
                self.push_event(app, machine, "exit", "stopped", "flyd", at, exit);
                crate::image::halted(self, app, machine, at);
            }
            MachineState::Suspended => {
                self.push_event(app, machine, "suspend", "suspended", "flyd", at, no_request);
                crate::image::halted(self, app, machine, at);
            }
            MachineState::Destroyed => {
                self.push_event(app, machine, "destroy", "destroyed", "user", at, no_request);
                crate::image::halted(self, app, machine, at);
                self.mark_destroyed(app, machine);
            }
            _ => {}
        }
    }

    /// Starts a new run loop of the Machine's health checks, the first run `after` ms from `at`.
    pub(crate) fn start_checks(&mut self, app: &str, machine: &str, at: i64, after: i64) {
        let Ok(member) = self.machine_any_mut(app, machine) else {
            return;
        };
        member.checks_loop += 1;
        let run_loop = member.checks_loop;
        let machine = machine.to_string();
        self.schedule(app, at + after, TimerKind::Checks { machine, run_loop });
    }

    /// One run of the health checks while the Machine is started; when it is not, the loop ends (a Machine
    /// that is not running reports its checks critical: `sim::machines::view`).
    fn run_checks(&mut self, app: &str, machine: &str, run_loop: u64, at: i64) {
        let Some((owner, member)) = self
            .apps
            .get(app)
            .and_then(|owner| owner.machines.get(machine).map(|member| (owner, member)))
        else {
            return;
        };
        if member.checks_loop != run_loop || member.state != MachineState::Started {
            return;
        }
        let checks = crate::image::checks(owner, member, at);
        if let Ok(member) = self.machine_any_mut(app, machine) {
            member.checks_run = Some(ChecksRun { at_ms: at, checks });
        }
        let machine = machine.to_string();
        self.schedule(
            app,
            at + CHECK_INTERVAL_MS,
            TimerKind::Checks { machine, run_loop },
        );
    }

    /// A destroyed Machine stays listed (`include_deleted`) and frees its volume.
    fn mark_destroyed(&mut self, app: &str, machine: &str) {
        let Ok(owner) = self.app_mut(app) else {
            return;
        };
        let Some(member) = owner.machines.get_mut(machine) else {
            return;
        };
        member.destroyed = true;
        if let Some(volume) = member
            .volume
            .take()
            .and_then(|id| owner.volumes.get_mut(&id))
        {
            volume.attached_machine_id = None;
        }
    }

    pub(crate) fn exit_and_restart(
        &mut self,
        app: &str,
        machine: &str,
        at: i64,
        exit_code: i64,
        oom: bool,
        sim: &Sim,
    ) -> ApiResult<()> {
        let nested = sim.faults().cfg.monitor_exit_events;
        let timing = &sim.inner.timing;
        let member = self.machine_mut(app, machine)?;
        if member.state != MachineState::Started && member.state != MachineState::Starting {
            return Err(ApiError::new(
                412,
                format!(
                    "failed_precondition: machine {machine} is not running (state {})",
                    member.state
                ),
            ));
        }
        member.restart_count += 1;
        member.crash_reason = None;
        let restart_count = member.restart_count;
        let exit = json!({"exit_code": exit_code, "guest_exit_code": exit_code,
            "signal": if oom { 9 } else { -1 }, "oom_killed": oom, "requested_stop": false,
            "restarting": true, "exited_at": rfc3339(at)});
        // fly-go `machine_types.go::MachineRequest`: the exit may come as `MonitorEvent.exit_event`.
        let req = if nested {
            json!({"MonitorEvent": {"exit_event": exit}, "restart_count": restart_count})
        } else {
            json!({"exit_event": exit, "restart_count": restart_count})
        };
        self.push_event(app, machine, "exit", "stopped", "flyd", at, req);
        if oom {
            self.log(app, machine, at, "Out of memory: Killed process (postgres)");
        }
        crate::image::halted(self, app, machine, at);
        self.transition(
            app,
            machine,
            MachineState::Starting,
            MachineState::Started,
            at,
            timing.start,
        )
    }
}
