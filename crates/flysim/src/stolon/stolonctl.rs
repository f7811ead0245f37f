//! `stolonctl` (status, spec, update, init, clusterdata read) and `stolonctl-run`.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Value};

use super::{env_of, keeper_uid, md5_password, role_of, start_restore, USERS};
use crate::clock::rfc3339;
use crate::exec::Out;
use crate::image::{image_of, is_stolon_image, ExecContext};
use crate::model::*;

pub(super) fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

pub(crate) fn stolonctl(
    context: &mut ExecContext<'_>,
    args: &[String],
    env: &BTreeMap<String, String>,
    stdin: &str,
) -> Out {
    let mut cluster = env.get("STOLONCTL_CLUSTER_NAME").cloned();
    let mut backend = env.get("STOLONCTL_STORE_BACKEND").cloned();
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let take = |i: &mut usize| -> Option<String> {
            *i += 1;
            args.get(*i).cloned()
        };
        if let Some(v) = arg.strip_prefix("--cluster-name=") {
            cluster = Some(v.into());
        } else if arg == "--cluster-name" {
            cluster = take(&mut i);
        } else if let Some(v) = arg.strip_prefix("--store-backend=") {
            backend = Some(v.into());
        } else if arg == "--store-backend" {
            backend = take(&mut i);
        } else if arg == "--store-endpoints" || arg == "--store-url" || arg == "--store-node" {
            let _ = take(&mut i);
        } else if arg.starts_with("--store-") {
        } else {
            rest.push(arg.clone());
        }
        i += 1;
    }
    let Some(sub) = rest.first().cloned() else {
        return Out::ok("Usage:\n  stolonctl [command]\n\nAvailable Commands:\n  clusterdata Manage current cluster data\n  init        Initialize a new cluster\n  spec        Retrieve the current cluster specification\n  status      Display the current cluster status\n  update      Update a cluster specification\n");
    };
    if sub == "--help" || sub == "help" {
        return Out::ok("Usage:\n  stolonctl [command]\n");
    }
    let Some(cluster) = cluster.filter(|c| !c.is_empty()) else {
        return Out::err(1, "stolonctl: cluster name required\n");
    };
    if backend.as_deref().is_none_or(|b| b.is_empty()) {
        return Out::err(1, "stolonctl: store backend type required\n");
    }
    let app = context.app.clone();
    if cluster != app
        || context
            .state
            .apps
            .get(&app)
            .and_then(|owner| owner.pg.as_ref())
            .is_none()
    {
        return Out::err(1, "stolonctl: nil cluster data: cluster not initialized\n");
    }
    let args: Vec<String> = rest[1..].to_vec();
    match sub.as_str() {
        "spec" => {
            let pg = context.state.apps.get(&app).and_then(|owner| owner.pg.as_ref());
            let spec = pg.map(|p| p.spec.clone()).unwrap_or(Value::Null);
            Out::ok(format!("{}\n", serde_json::to_string_pretty(&spec).unwrap_or_default()))
        }
        "update" => {
            let patch_mode = args.iter().any(|arg| arg == "--patch" || arg == "-p");
            let Some(doc) = args.iter().find(|arg| !arg.starts_with('-')) else {
                return Out::err(1, "stolonctl: no cluster spec provided as argument and no file provided (--file/-f option)\n");
            };
            let patch: Value = match serde_json::from_str(doc) {
                Ok(patch) => patch,
                Err(e) => return Out::err(1, format!("stolonctl: failed to patch cluster spec: {e}\n")),
            };
            if !patch.is_object() {
                return Out::err(1, "stolonctl: failed to patch cluster spec: not a JSON object\n");
            }
            let Some(pg) = context.state.apps.get_mut(&app).and_then(|owner| owner.pg.as_mut()) else {
                return Out::err(1, "stolonctl: nil cluster data\n");
            };
            if patch_mode {
                merge_patch(&mut pg.spec, &patch);
            } else {
                pg.spec = patch;
            }
            let (machine, now) = (context.machine.clone(), context.now);
            context.state.log(&app, &machine, now, "sentinel | cluster spec updated");
            Out::ok("")
        }
        "init" => init(context, &args, stdin),
        "status" => Out::ok(status_text(context.state, &app)),
        "clusterdata" => {
            if args.first().map(|s| s.as_str()) == Some("read") {
                Out::ok(format!("{}\n", clusterdata(context.state, &app, context.now)))
            } else {
                Out::err(1, "stolonctl: only `clusterdata read` is emulated by flysim\n")
            }
        }
        other => Out::err(1, format!("Error: unknown command \"{other}\" for \"stolonctl\"\nRun 'stolonctl --help' for usage.\n")),
    }
}

/// `stolonctl init [--yes] [SPEC]`: asks without `--yes`; `new` re-creates the cluster on a random
/// running keeper, `pitr` starts a restore there.
pub(super) fn init(context: &mut ExecContext<'_>, args: &[String], stdin: &str) -> Out {
    init_steps(context, args, stdin).unwrap_or_else(|refused| refused)
}

/// `init`'s steps; `Err` carries the refusal stolonctl prints.
fn init_steps(context: &mut ExecContext<'_>, args: &[String], stdin: &str) -> Result<Out, Out> {
    confirm(args, stdin)?;
    let document = args.iter().find(|arg| !arg.starts_with('-'));
    let (spec, mode) = init_spec(document)?;
    let (keepers, keeper) = pick_keeper(context)?;
    let cluster_uid = context.state.next_id("", 8);
    let app = context.app.clone();
    let Some(pg) = context
        .state
        .apps
        .get_mut(&app)
        .and_then(|owner| owner.pg.as_mut())
    else {
        return Err(Out::err(1, "stolonctl: nil cluster data\n"));
    };
    pg.cluster_uid = cluster_uid;
    pg.spec = spec;
    pg.master = None;
    if mode == "new" {
        init_new(context, &keeper);
    } else {
        init_pitr(context, &keepers, &keeper);
    }
    Ok(Out::ok(""))
}

/// Without `--yes`, stolonctl asks and needs `yes` on stdin.
fn confirm(args: &[String], stdin: &str) -> Result<(), Out> {
    if args.iter().any(|arg| arg == "--yes" || arg == "-y") {
        return Ok(());
    }
    let warning = "WARNING: The current cluster data will be removed\nWARNING: The databases managed by the keepers will be overwritten depending on the provided cluster spec.\n";
    let answer = stdin.lines().next().unwrap_or("").trim().to_string();
    if answer == "yes" {
        return Ok(());
    }
    Err(Out {
        code: 1,
        stdout: format!("{warning}Are you sure you want to continue? [yes/no] "),
        stderr: if answer.is_empty() {
            "stolonctl: EOF\n".into()
        } else {
            String::new()
        },
        ..Out::default()
    })
}

/// The spec to initialise with (default `{"initMode": "new"}`) and its mode, validated.
fn init_spec(document: Option<&String>) -> Result<(Value, String), Out> {
    let spec: Value = match document {
        Some(text) => match serde_json::from_str(text) {
            Ok(spec @ Value::Object(_)) => spec,
            Ok(_) => {
                return Err(Out::err(
                    1,
                    "stolonctl: failed to unmarshal cluster spec: not an object\n",
                ))
            }
            Err(e) => {
                return Err(Out::err(
                    1,
                    format!("stolonctl: failed to unmarshal cluster spec: {e}\n"),
                ))
            }
        },
        None => json!({"initMode": "new"}),
    };
    let mode = spec
        .get("initMode")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    if mode.is_empty() {
        return Err(Out::err(
            1,
            "stolonctl: failed to validate cluster spec: initMode undefined\n",
        ));
    }
    let no_restore_command = spec
        .pointer("/pitrConfig/dataRestoreCommand")
        .and_then(|v| v.as_str())
        .is_none_or(|s| s.is_empty());
    if mode == "pitr" && no_restore_command {
        return Err(Out::err(
            1,
            "stolonctl: failed to validate cluster spec: pitrConfig.dataRestoreCommand undefined\n",
        ));
    }
    if mode != "pitr" && mode != "new" {
        return Err(Out::err(
            1,
            format!("stolonctl: flysim emulates initMode \"new\" and \"pitr\", not {mode:?}\n"),
        ));
    }
    Ok((spec, mode))
}

/// The sentinel picks a random registered (running) keeper: all of them, and the pick.
fn pick_keeper(context: &mut ExecContext<'_>) -> Result<(Vec<String>, String), Out> {
    let keepers: Vec<String> = context
        .state
        .apps
        .get(&context.app)
        .map(|owner| {
            owner
                .machines
                .values()
                .filter(|member| {
                    !member.destroyed
                        && member.state == MachineState::Started
                        && is_stolon_image(image_of(member))
                })
                .map(|member| member.id.clone())
                .collect()
        })
        .unwrap_or_default();
    if keepers.is_empty() {
        return Err(Out::err(1, "stolonctl: no keepers available\n"));
    }
    let pick = (context.state.rand() % keepers.len() as u64) as usize;
    let keeper = keepers[pick].clone();
    Ok((keepers, keeper))
}

/// `initMode: new`: an empty cluster on `keeper`, roles from its env.
fn init_new(context: &mut ExecContext<'_>, keeper: &str) {
    let app = context.app.clone();
    let env = env_of(context.state, &app, keeper).unwrap_or_default();
    if let Some(pg) = context
        .state
        .apps
        .get_mut(&app)
        .and_then(|owner| owner.pg.as_mut())
    {
        pg.phase = "normal".into();
        pg.pitr = None;
        pg.databases = BTreeMap::from([("postgres".to_string(), BTreeMap::new())]);
        pg.timeline = 1;
        pg.lsn = 0x0100_0028;
        pg.master = Some(keeper.to_string());
        pg.roles.clear();
        for (user, var) in USERS {
            if let Some(password) = env.get(var) {
                pg.roles
                    .insert(user.to_string(), md5_password(user, password));
            }
        }
    }
    context.state.log(
        &app,
        keeper,
        context.now,
        format!("sentinel | initializing cluster using keeper {keeper}"),
    );
}

/// `initMode: pitr`: every keeper stops serving; the chosen one starts the restore.
fn init_pitr(context: &mut ExecContext<'_>, keepers: &[String], keeper: &str) {
    let (app, now) = (context.app.clone(), context.now);
    if let Some(pg) = context
        .state
        .apps
        .get_mut(&app)
        .and_then(|owner| owner.pg.as_mut())
    {
        pg.phase = "initializing".into();
        pg.pitr = Some(Pitr {
            keeper: keeper.to_string(),
            step: "restoring".into(),
            step_started_ms: now,
            attempts: 0,
            message: String::new(),
            backup: None,
            gen: 0,
            restored: None,
        });
    }
    for other in keepers {
        if let Ok(machine) = context.state.machine_mut(&app, other) {
            machine.ready_ms = None;
        }
    }
    context.state.log(
        &app,
        keeper,
        now,
        "sentinel | trying to find initial master",
    );
    context.state.log(
        &app,
        keeper,
        now,
        format!("sentinel | initializing cluster in pitr mode using keeper {keeper}"),
    );
    start_restore(context.state, &app, now, context.sim);
}

pub(super) fn status_text(state: &State, app: &str) -> String {
    let Some(owner) = state.apps.get(app) else {
        return String::new();
    };
    let Some(pg) = owner.pg.as_ref() else {
        return String::new();
    };
    let mut s = String::from("=== Active sentinels ===\n\nID\t\tLEADER\n");
    let mut first = true;
    for member in owner
        .machines
        .values()
        .filter(|member| member.state == MachineState::Started && !member.destroyed)
    {
        s.push_str(&format!(
            "{}\t{}\n",
            &keeper_uid(member)[..8.min(keeper_uid(member).len())],
            first
        ));
        first = false;
    }
    s.push_str("\n=== Active proxies ===\n\nNo active proxies\n\n=== Keepers ===\n\nUID\t\tHEALTHY\tPG LISTENADDRESS\t\tPG HEALTHY\tPG WANTEDGENERATION\tPG CURRENTGENERATION\n");
    for member in owner.machines.values().filter(|member| !member.destroyed) {
        let healthy = member.state == MachineState::Started;
        let pg_healthy = role_of(owner, member).role.is_some();
        s.push_str(&format!(
            "{}\t{}\t[{}]:5433\t{}\t\t{}\t\t\t{}\n",
            keeper_uid(member),
            healthy,
            member.private_ip,
            pg_healthy,
            member.gen,
            if pg_healthy { member.gen } else { 0 }
        ));
    }
    s.push_str("\n=== Cluster Info ===\n\n");
    match pg.master.as_ref().and_then(|id| owner.machines.get(id)) {
        Some(member) if pg.phase == "normal" => {
            s.push_str(&format!("Master Keeper: {}\n", keeper_uid(member)))
        }
        _ => s.push_str("No cluster available\n"),
    }
    if pg.phase == "normal" {
        s.push_str("\n===== Keepers/DB tree =====\n\n");
        if let Some(master) = pg.master.as_ref().and_then(|id| owner.machines.get(id)) {
            s.push_str(&format!("{} (master)\n", keeper_uid(master)));
            let replicas: Vec<&Machine> = owner
                .machines
                .values()
                .filter(|member| {
                    member.id != master.id
                        && !member.destroyed
                        && role_of(owner, member).role == Some("replica")
                })
                .collect();
            for (i, r) in replicas.iter().enumerate() {
                let branch = if i + 1 == replicas.len() {
                    "└─"
                } else {
                    "├─"
                };
                s.push_str(&format!("{branch}{}\n", keeper_uid(r)));
            }
        }
    }
    s
}

pub(crate) fn clusterdata(state: &State, app: &str, now: i64) -> String {
    let Some(owner) = state.apps.get(app) else {
        return "{}".into();
    };
    let Some(pg) = owner.pg.as_ref() else {
        return "{}".into();
    };
    let mut keepers = serde_json::Map::new();
    let mut dbs = serde_json::Map::new();
    for member in owner.machines.values().filter(|member| !member.destroyed) {
        let uid = keeper_uid(member);
        keepers.insert(
            uid.clone(),
            json!({"uid": uid, "generation": member.gen, "changeTime": rfc3339(member.updated_ms),
                "spec": {}, "status": {"healthy": member.state == MachineState::Started, "lastHealthyTime": rfc3339(now),
                "bootUUID": member.instance_id, "postgresBinaryVersion": {"Maj": pg.pg_version / 10000, "Min": 0},
                "canBeMaster": true, "canBeSynchronousReplica": true}}),
        );
        let is_master = pg.master.as_deref() == Some(&member.id);
        let healthy = role_of(owner, member).role.is_some();
        dbs.insert(
            format!("db-{uid}"),
            json!({"uid": format!("db-{uid}"), "generation": member.gen, "changeTime": rfc3339(member.updated_ms),
                "spec": {"keeperUID": uid, "role": if is_master {"master"} else {"standby"},
                    "initMode": if is_master { pg.spec.get("initMode").cloned().unwrap_or(json!("none")) } else { json!("resync") }},
                "status": {"healthy": healthy, "currentGeneration": if healthy { member.gen } else { 0 },
                    "listenAddress": member.private_ip, "port": "5433",
                    "systemdID": pg.system_identifier.to_string(), "timelineID": pg.timeline, "xLogPos": pg.lsn}}),
        );
    }
    let master_db = pg
        .master
        .as_ref()
        .and_then(|id| owner.machines.get(id))
        .map(|member| format!("db-{}", keeper_uid(member)))
        .unwrap_or_default();
    let mut status = json!({"phase": pg.phase, "master": master_db});
    if let Some(p) = &pg.pitr {
        // Not a stolon field: flysim's view of the PITR run, for scripted checks.
        status["flysimPitr"] = json!({"step": p.step, "attempts": p.attempts, "message": p.message,
            "backup": p.backup, "keeper": p.keeper});
    }
    json!({"formatVersion": 1, "changeTime": rfc3339(now),
        "cluster": {"uid": pg.cluster_uid, "generation": 1, "changeTime": rfc3339(now), "spec": pg.spec, "status": status},
        "keepers": keepers, "dbs": dbs, "proxy": {"generation": 1, "spec": {}}})
    .to_string()
}

/// `stolonctl-run <base64 args>`: reads /data/.env itself, always exits 0, prints one JSON line.
pub(crate) fn stolonctl_run(
    context: &mut ExecContext<'_>,
    args: &[String],
    env: &BTreeMap<String, String>,
) -> Out {
    let Some(enc) = args.first() else {
        let line =
            json!({"success": false, "message": "no arguments provided", "data": Value::Null});
        return Out::ok(format!("{line}\n"));
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(enc.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some(decoded) = decoded else {
        let line = json!({"success": false, "message": "failed to decode arguments: illegal base64 data", "data": Value::Null});
        return Out::ok(format!("{line}\n"));
    };
    let Some(argv) = shlex::split(&decoded) else {
        let line =
            json!({"success": false, "message": "failed to split arguments", "data": Value::Null});
        return Out::ok(format!("{line}\n"));
    };
    let mut env = env.clone();
    let dotenv = context
        .state
        .apps
        .get(&context.app)
        .and_then(|owner| {
            owner
                .machines
                .get(&context.machine)
                .and_then(|member| member.volume.clone())
                .and_then(|v| owner.volumes.get(&v))
        })
        .and_then(|v| v.files.get("/data/.env").cloned())
        .unwrap_or_default();
    for line in dotenv.lines() {
        if let Some((k, v)) = line.split_once('=') {
            env.insert(k.to_string(), v.to_string());
        }
    }
    let out = stolonctl(context, &argv, &env, "");
    let line = if out.code == 0 {
        json!({"success": true, "message": "", "data": out.stdout})
    } else {
        json!({"success": false, "message": out.stderr.trim_end(), "data": out.stdout})
    };
    Out::ok(format!("{line}\n"))
}

// ----------------------------------------------------------------------------------------------
// psql
// ----------------------------------------------------------------------------------------------
