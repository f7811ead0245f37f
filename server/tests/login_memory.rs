//! Security review H4: sign-ins cannot exhaust memory. Password hashing (argon2id, `m_cost` KiB each) runs at
//! most `HashLimits::permits` at a time, so 50 concurrent sign-ins raise the process's peak resident memory
//! (`VmHWM`) by about `permits × m_cost`, not `50 × m_cost`. Memory, not time, is what this measures.
//!
//! Its own test binary with a single memory test: `VmHWM` is the whole process's, and another test running
//! alongside would move it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

#[allow(dead_code)] // the harness serves several test binaries; this one uses a little of it
#[path = "api/helpers.rs"]
mod helpers;

use walden_app::api::auth::Login;
use walden_core::users::{HashLimits, HashParams};

/// The console's resident memory before any hashing, generously rounded up (the review measured about
/// 213 MiB under load). fly.toml must leave room for this plus the hashing slots.
const BASELINE_MIB: u64 = 256;
/// Concurrent sign-ins (the review used 24 to reach +411 MB).
const SIGN_INS: usize = 50;

/// Peak resident memory of this process so far, in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn fifty_concurrent_sign_ins_stay_within_the_hashing_slots() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Production hashing parameters (the default), behind the proxy header so that every request is its
        // own client and the per-client limit does not turn sign-ins away before they hash; with a master
        // key, so that each unknown name is its own account to the limiter (a keyed fingerprint).
        let app = helpers::spawn_app_with(|c| {
            c.secure_cookies = false;
            c.master_key = Some("ab".repeat(32).into());
            c.client_ip_header = Some("fly-client-ip".parse().unwrap());
        })
        .await;
        let attempt = |n: usize| {
            let session = app.session();
            let login = Login {
                name: format!("nobody-{n}"),
                password: "a guess that is long enough".into(),
                code: String::new(),
            };
            async move {
                session
                    .request(&login)
                    .header("fly-client-ip", format!("198.51.100.{}", n % 250 + 1))
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        };
        // One sign-in first, so everything but the concurrency is already in the baseline.
        assert_eq!(attempt(SIGN_INS).await, 422);
        let before = vm_hwm_kib();

        let running: Vec<_> = (0..SIGN_INS).map(|n| tokio::spawn(attempt(n))).collect();
        let mut statuses = Vec::new();
        for sign_in in running {
            statuses.push(sign_in.await.unwrap());
        }
        let after = vm_hwm_kib();

        // Each is refused as a wrong sign-in (422), or, if it waited too long for a hashing slot, as busy
        // (503); never a server error.
        assert!(
            statuses.iter().all(|s| *s == 422 || *s == 503),
            "{statuses:?}"
        );
        assert!(statuses.iter().any(|s| *s == 422));
        let m_cost = u64::from(HashParams::OWASP.m_cost);
        let permits = HashLimits::DEFAULT.permits as u64;
        // The slots, plus slack for allocator and thread overhead: far below one hash per request.
        let bound = permits * m_cost + 2 * m_cost;
        let growth = after.saturating_sub(before);
        eprintln!(
            "VmHWM {before} KiB -> {after} KiB (+{growth} KiB, bound {bound} KiB): {statuses:?}"
        );
        assert!(
            growth < bound,
            "peak memory grew by {growth} KiB under {SIGN_INS} sign-ins; bound {bound} KiB \
             ({permits} slots of {m_cost} KiB and slack)"
        );
        assert!(bound < SIGN_INS as u64 * m_cost / 4);
        app.stop().await;
    });
}

/// fly.toml's VM has room for the baseline plus every hashing slot at the production parameters.
#[test]
fn the_fly_vm_has_room_for_the_hashing_slots() {
    let fly = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../fly.toml")).unwrap();
    let memory = fly
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("memory = \""))
        .and_then(|v| v.strip_suffix("mb\""))
        .expect("fly.toml sets [[vm]] memory = \"<n>mb\"");
    let vm_mib: u64 = memory.parse().unwrap();
    let hashing_mib =
        HashLimits::DEFAULT.permits as u64 * u64::from(HashParams::OWASP.m_cost) / 1024;
    assert!(
        vm_mib >= BASELINE_MIB + hashing_mib,
        "fly.toml gives {vm_mib} MiB; the console needs {BASELINE_MIB} MiB + {hashing_mib} MiB for hashing"
    );
}
