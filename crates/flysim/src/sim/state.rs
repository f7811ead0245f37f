//! Helpers on the state every module shares: seeded ids, timers, logs, events, transient transitions, and
//! what a Machine's processes see (env, image).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde_json::Value;

use super::{ApiError, ApiResult};
use crate::model::*;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl State {
    pub(crate) fn rand(&mut self) -> u64 {
        self.counter += 1;
        splitmix(self.seed ^ self.counter.wrapping_mul(0x2545_F491_4F6C_DD1D))
    }

    pub(crate) fn next_id(&mut self, prefix: &str, hex_len: usize) -> String {
        let mut s = String::from(prefix);
        while s.len() < prefix.len() + hex_len {
            s.push_str(&format!("{:016x}", self.rand()));
        }
        s.truncate(prefix.len() + hex_len);
        s
    }

    /// A 26-character ULID-like id (Machine versions, events).
    pub(crate) fn ulid(&mut self, now_ms: i64) -> String {
        let mut s = String::with_capacity(26);
        let mut t = now_ms.max(0) as u64;
        let mut time_part = [0u8; 10];
        for c in time_part.iter_mut().rev() {
            *c = CROCKFORD[(t % 32) as usize];
            t /= 32;
        }
        s.push_str(std::str::from_utf8(&time_part).unwrap_or("0000000000"));
        let mut r = self.rand();
        let mut r2 = self.rand();
        for i in 0..16 {
            let src = if i < 8 { &mut r } else { &mut r2 };
            s.push(CROCKFORD[(*src % 32) as usize] as char);
            *src /= 32;
        }
        s
    }

    pub(crate) fn schedule(&mut self, app: &str, at_ms: i64, kind: TimerKind) {
        self.counter += 1;
        let seq = self.counter;
        self.timers.push(Timer {
            at_ms,
            seq,
            app: app.to_string(),
            kind,
        });
    }

    pub(crate) fn app(&self, name: &str) -> ApiResult<&App> {
        self.apps
            .get(name)
            .ok_or_else(|| ApiError::not_found(format!("app not found: {name}")))
    }

    pub(crate) fn app_mut(&mut self, name: &str) -> ApiResult<&mut App> {
        self.apps
            .get_mut(name)
            .ok_or_else(|| ApiError::not_found(format!("app not found: {name}")))
    }

    pub(crate) fn machine_mut(&mut self, app: &str, id: &str) -> ApiResult<&mut Machine> {
        self.app_mut(app)?
            .machines
            .get_mut(id)
            .filter(|member| !member.destroyed)
            .ok_or_else(|| ApiError::not_found(format!("machine not found: {id}")))
    }

    pub(crate) fn log(&mut self, app: &str, machine: &str, at_ms: i64, message: impl Into<String>) {
        self.counter += 1;
        let seq = self.counter;
        let id = format!("{:016x}", splitmix(seq));
        let Some(owner) = self.apps.get_mut(app) else {
            return;
        };
        let region = owner
            .machines
            .get(machine)
            .map(|member| member.region.clone())
            .unwrap_or_default();
        // Nanosecond stamps strictly increase so next_token paging never loses a line.
        let mut ns = at_ms as i128 * 1_000_000;
        if let Some(last) = owner.logs.back() {
            if ns <= last.ns {
                ns = last.ns + 1;
            }
        }
        owner.logs.push_back(LogLine {
            ns,
            id,
            instance: machine.to_string(),
            region,
            message: message.into(),
        });
        while owner.logs.len() > LOG_CAP {
            owner.logs.pop_front();
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push_event(
        &mut self,
        app: &str,
        machine: &str,
        kind: &str,
        status: &str,
        source: &str,
        at_ms: i64,
        request: Value,
    ) {
        let id = self.ulid(at_ms);
        if let Ok(member) = self.machine_any_mut(app, machine) {
            member.events.push_front(Event {
                id,
                kind: kind.into(),
                status: status.into(),
                source: source.into(),
                ms: at_ms,
                request,
            });
            member.events.truncate(EVENT_CAP);
        }
    }

    pub(crate) fn machine_any_mut(&mut self, app: &str, id: &str) -> ApiResult<&mut Machine> {
        self.app_mut(app)?
            .machines
            .get_mut(id)
            .ok_or_else(|| ApiError::not_found(format!("machine not found: {id}")))
    }

    /// Move a Machine to a transient state and schedule the settle.
    pub(crate) fn transition(
        &mut self,
        app: &str,
        machine: &str,
        transient: MachineState,
        to: MachineState,
        at_ms: i64,
        after: Duration,
    ) -> ApiResult<()> {
        let member = self.machine_any_mut(app, machine)?;
        member.state = transient;
        member.gen += 1;
        member.updated_ms = at_ms;
        member.ready_ms = None;
        let gen = member.gen;
        self.schedule(
            app,
            at_ms + after.as_millis() as i64,
            TimerKind::Settle {
                machine: machine.to_string(),
                gen,
                to,
            },
        );
        Ok(())
    }
}

/// Env a process on the Machine sees: config env, then the secrets it booted with, then Fly's own vars.
pub(crate) fn machine_env(app: &App, member: &Machine) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if let Some(obj) = member.config.get("env").and_then(|e| e.as_object()) {
        for (k, v) in obj {
            if let Some(s) = v.as_str() {
                env.insert(k.clone(), s.to_string());
            }
        }
    }
    for (k, v) in &member.secrets_env {
        env.insert(k.clone(), v.clone());
    }
    env.insert("FLY_APP_NAME".into(), app.name.clone());
    env.insert("FLY_MACHINE_ID".into(), member.id.clone());
    env.insert("FLY_ALLOC_ID".into(), member.id.clone());
    env.insert("FLY_REGION".into(), member.region.clone());
    env.insert("FLY_PRIVATE_IP".into(), member.private_ip.clone());
    env.insert(
        "FLY_IMAGE_REF".into(),
        crate::image::image_of(member).to_string(),
    );
    env.insert("FLY_MACHINE_VERSION".into(), member.instance_id.clone());
    env.insert("HOSTNAME".into(), member.id.clone());
    env.insert(
        "PATH".into(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    );
    env
}

pub(crate) fn new_app(
    state: &mut State,
    name: &str,
    org: &str,
    network: &str,
    role: &str,
    now: i64,
) -> App {
    let id = state.next_id("", 14);
    let n = state.rand() % 900_000 + 100_000;
    App {
        id,
        name: name.to_string(),
        org: org.to_string(),
        network: if network.is_empty() {
            "default".into()
        } else {
            network.into()
        },
        app_role: role.to_string(),
        internal_numeric_id: n,
        created_ms: now,
        machines: BTreeMap::new(),
        volumes: BTreeMap::new(),
        secrets: BTreeMap::new(),
        secrets_version: 0,
        logs: VecDeque::new(),
        pg: None,
        consul_url: None,
        secrets_history: BTreeMap::new(),
    }
}
