//! Scheduled work: transient states settling, boots becoming ready, crashes, PITR steps, archiving and
//! detached backups. Timers run in time order (then creation order); each is handed to its owner.

use serde_json::json;

use super::{ApiError, ApiResult, Sim, Timing};
use crate::clock::rfc3339;
use crate::model::*;

impl State {
    /// Run every timer due at or before `now`, earliest first. Returns whether anything ran.
    pub(crate) fn run_due(&mut self, now: i64, sim: &Sim) -> bool {
        let mut ran = false;
        #[allow(clippy::while_let_loop)]
        loop {
            let Some(idx) = self
                .timers
                .iter()
                .enumerate()
                .filter(|(_, t)| t.at_ms <= now)
                .min_by_key(|(_, t)| (t.at_ms, t.seq))
                .map(|(i, _)| i)
            else {
                break;
            };
            let timer = self.timers.swap_remove(idx);
            ran = true;
            self.fire(timer, sim);
        }
        ran
    }

    fn fire(&mut self, timer: Timer, sim: &Sim) {
        let at = timer.at_ms;
        let app = timer.app.clone();
        match timer.kind {
            TimerKind::Settle { machine, gen, to } => {
                let Ok(member) = self.machine_any_mut(&app, &machine) else {
                    return;
                };
                if member.gen != gen {
                    return;
                }
                member.state = to;
                member.updated_ms = at;
                member.gen += 1;
                match to {
                    MachineState::Started => {
                        self.push_event(&app, &machine, "start", "started", "flyd", at, json!({}));
                        crate::image::boot(self, &app, &machine, at, sim);
                    }
                    MachineState::Stopped => {
                        let exit = json!({"exit_event": {"exit_code": 0, "guest_exit_code": 0, "signal": -1,
                            "oom_killed": false, "requested_stop": true, "restarting": false,
                            "exited_at": rfc3339(at)}});
                        self.push_event(&app, &machine, "exit", "stopped", "flyd", at, exit);
                        crate::image::halted(self, &app, &machine, at);
                    }
                    MachineState::Suspended => {
                        self.push_event(
                            &app,
                            &machine,
                            "suspend",
                            "suspended",
                            "flyd",
                            at,
                            json!({}),
                        );
                        crate::image::halted(self, &app, &machine, at);
                    }
                    MachineState::Destroyed => {
                        self.push_event(
                            &app,
                            &machine,
                            "destroy",
                            "destroyed",
                            "user",
                            at,
                            json!({}),
                        );
                        crate::image::halted(self, &app, &machine, at);
                        if let Ok(owner) = self.app_mut(&app) {
                            if let Some(member) = owner.machines.get_mut(&machine) {
                                member.destroyed = true;
                                let vol = member.volume.take();
                                if let Some(v) = vol.and_then(|v| owner.volumes.get_mut(&v)) {
                                    v.attached_machine_id = None;
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            TimerKind::Ready { machine, gen } => {
                crate::image::ready(self, &app, &machine, gen, at);
            }
            TimerKind::Crash { machine, gen } => {
                let Ok(member) = self.machine_any_mut(&app, &machine) else {
                    return;
                };
                if member.gen != gen {
                    return;
                }
                let _ = self.exit_and_restart(&app, &machine, at, 2, false, &sim.inner.timing);
            }
            kind @ (TimerKind::Pitr { .. } | TimerKind::Archive | TimerKind::BackupDone { .. }) => {
                crate::image::cluster_timer(self, &app, kind, at, sim);
            }
        }
    }

    pub(crate) fn exit_and_restart(
        &mut self,
        app: &str,
        machine: &str,
        at: i64,
        exit_code: i64,
        oom: bool,
        timing: &Timing,
    ) -> ApiResult<()> {
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
        let req = json!({"exit_event": {"exit_code": exit_code, "guest_exit_code": exit_code,
            "signal": if oom { 9 } else { -1 }, "oom_killed": oom, "requested_stop": false,
            "restarting": true, "exited_at": rfc3339(at)}, "restart_count": restart_count});
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
