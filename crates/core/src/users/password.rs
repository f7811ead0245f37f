//! Password hashing (argon2id, PHC strings) and the password policy.
//!
//! Every hash and verify holds one of a few permits ([`HashLimits`]): argon2id takes `m_cost` KiB per run, so
//! unbounded concurrency lets one client exhaust the VM's memory (security review H4). A caller that cannot get
//! a permit within the queue timeout gets [`UserError::Busy`] instead of waiting forever.
//!
//! The work runs on a fixed set of `permits` threads of its own, each hashing in one block buffer that it
//! keeps and reuses, so hashing memory is allocated once and never returned to the allocator. A permit alone
//! was not enough: with a fresh 19 MiB allocation per run, glibc's dynamic mmap threshold rises after the
//! first free and later blocks come from (and stay in) per-thread arenas. Measured with 50 concurrent
//! sign-ins, peak memory grew by 397 MB on tokio's blocking pool and by 203 MB on two fixed threads that still
//! allocated per run; with the kept buffers it stays within `permits × m_cost` (`server/tests/login_memory.rs`).

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::UserError;
use crate::access::FieldError;

/// Shortest password accepted, in characters (NIST SP 800-63B-4 asks for 15 when a password is the only
/// factor; 12 with the common-password list is the floor OWASP's ASVS accepts).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted, in characters (bounds hashing work on hostile input).
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Argon2id parameters. [`HashParams::OWASP`] is what production uses; tests may use cheaper ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Parallelism.
    pub p_cost: u32,
}

impl HashParams {
    /// OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
    pub const OWASP: HashParams = HashParams {
        m_cost: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };

    /// Far too cheap for real passwords, fast enough for hundreds of test logins (feature `testkit`, for tests
    /// only).
    #[cfg(feature = "testkit")]
    pub const TEST: HashParams = HashParams {
        m_cost: 64,
        t_cost: 1,
        p_cost: 1,
    };
}

impl Default for HashParams {
    fn default() -> Self {
        HashParams::OWASP
    }
}

/// How much hashing may run at once, and how long a caller waits for its turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashLimits {
    /// Hashing runs at once. Peak hashing memory is `permits × m_cost` KiB: fly.toml's VM is sized for it
    /// (`server/tests/login_memory.rs` checks both).
    pub permits: usize,
    /// How long a caller waits for a permit before giving up with [`UserError::Busy`].
    pub queue_timeout: Duration,
}

impl HashLimits {
    /// Two hashes at once (38 MiB with [`HashParams::OWASP`]); a 10-second queue.
    pub const DEFAULT: HashLimits = HashLimits {
        permits: 2,
        queue_timeout: Duration::from_secs(10),
    };
}

impl Default for HashLimits {
    fn default() -> Self {
        HashLimits::DEFAULT
    }
}

/// Hashes and verifies passwords on tokio's blocking pool, a few at a time ([`HashLimits`]). Cheap to clone.
#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
}

struct Inner {
    /// One permit per hashing run allowed at once; the permit moves into the job, so a cancelled request
    /// cannot free it while its hash still runs.
    permits: Arc<tokio::sync::Semaphore>,
    /// The hashing threads' queue (one thread per permit; they stop when the last hasher is dropped).
    jobs: Mutex<mpsc::Sender<Job>>,
    limits: HashLimits,
    params: Params,
    /// A hash of a random password made with the same parameters, verified against when the user does not
    /// exist, so that "no such user" takes as long as "wrong password".
    dummy: String,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("m_cost", &self.inner.params.m_cost())
            .field("t_cost", &self.inner.params.t_cost())
            .field("p_cost", &self.inner.params.p_cost())
            .field("permits", &self.inner.limits.permits)
            .finish()
    }
}

/// A unit of hashing work for the hashing threads, given the thread's block buffer.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Start `n` hashing threads that take jobs from one queue until every sender is gone.
fn start_workers(n: usize) -> Result<mpsc::Sender<Job>, UserError> {
    let (sender, receiver) = mpsc::channel::<Job>();
    let receiver = Arc::new(Mutex::new(receiver));
    for i in 0..n {
        let receiver = receiver.clone();
        std::thread::Builder::new()
            .name(format!("walden-hash-{i}"))
            .spawn(move || {
                // This thread's argon2 memory: grown to the largest parameters seen, then reused.
                let mut memory: Vec<Block> = Vec::new();
                loop {
                    let job = match receiver.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    // A panicking job drops its reply (the caller gets an error); the thread carries on.
                    let run = std::panic::AssertUnwindSafe(|| job(&mut memory));
                    let _ = std::panic::catch_unwind(run);
                }
            })
            .map_err(|_| UserError::Internal("the hashing threads could not start"))?;
    }
    Ok(sender)
}

/// Salt length in bytes (RFC 9106 recommends 16).
const SALT_LEN: usize = 16;

/// Run argon2 in `memory`, grown to what `params` need and kept for the next run.
fn compute(
    memory: &mut Vec<Block>,
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &[u8],
    salt: &[u8],
) -> Result<Output, UserError> {
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let mut buffer = Zeroizing::new([0u8; Output::MAX_LENGTH]);
    let out = buffer
        .get_mut(..len)
        .ok_or(UserError::Internal("argon2 output length"))?;
    let memory = memory
        .get_mut(..blocks)
        .ok_or(UserError::Internal("argon2 memory"))?;
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut *out, memory)
        .map_err(|_| UserError::Internal("hashing failed"))?;
    Output::new(out).map_err(|_| UserError::Internal("hashing failed"))
}

/// A new argon2id PHC string for `password`, with a random salt.
fn make_hash(
    memory: &mut Vec<Block>,
    params: &Params,
    password: &[u8],
) -> Result<String, UserError> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|_| UserError::Internal("random"))?;
    let (algorithm, version) = (Algorithm::Argon2id, Version::V0x13);
    let output = compute(memory, algorithm, version, params.clone(), password, &salt)?;
    let phc = PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(params).map_err(|_| UserError::Internal("argon2 params"))?,
        salt: Some(Salt::new(&salt).map_err(|_| UserError::Internal("argon2 salt"))?),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches `hash`, computed with the hash's own parameters. The outputs are compared in
/// constant time (`Output`'s `PartialEq`).
fn matches(memory: &mut Vec<Block>, password: &[u8], hash: &PasswordHash) -> bool {
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::new(hash.algorithm.as_str()) else {
        return false;
    };
    let Ok(version) = hash.version.map(Version::try_from).transpose() else {
        return false;
    };
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    let version = version.unwrap_or_default();
    compute(memory, algorithm, version, params, password, salt)
        .is_ok_and(|output| &output == expected)
}

impl Hasher {
    /// Build a hasher with the default [`HashLimits`]. Makes the dummy hash once (one hashing run).
    pub fn new(p: HashParams) -> Result<Self, UserError> {
        Self::with_limits(p, HashLimits::DEFAULT)
    }

    /// Build a hasher that runs at most `limits.permits` hashes at once.
    pub fn with_limits(p: HashParams, limits: HashLimits) -> Result<Self, UserError> {
        let params = Params::new(p.m_cost, p.t_cost, p.p_cost, None)
            .map_err(|_| UserError::Internal("invalid argon2 parameters"))?;
        let mut random = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut random[..]).map_err(|_| UserError::Internal("random"))?;
        let dummy = make_hash(&mut Vec::new(), &params, &random[..])?;
        let permits = limits.permits.max(1);
        Ok(Hasher {
            inner: Arc::new(Inner {
                permits: Arc::new(tokio::sync::Semaphore::new(permits)),
                jobs: Mutex::new(start_workers(permits)?),
                limits,
                params,
                dummy,
            }),
        })
    }

    /// Wait (at most the queue timeout) for a hashing permit.
    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, UserError> {
        let wait = self.inner.permits.clone().acquire_owned();
        match tokio::time::timeout(self.inner.limits.queue_timeout, wait).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(UserError::Internal("the hashing queue is closed")),
            Err(_elapsed) => Err(UserError::Busy),
        }
    }

    /// Run `work` on a hashing thread once a permit is free, and wait for its result.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner, &mut Vec<Block>) -> Result<T, UserError> + Send + 'static,
    ) -> Result<T, UserError> {
        let permit = self.permit().await?;
        let inner = self.inner.clone();
        let (reply, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _permit = permit;
            let _ = reply.send(work(&inner, memory));
        });
        self.inner
            .jobs
            .lock()
            .map_err(|_| UserError::Internal("the hashing queue is poisoned"))?
            .send(job)
            .map_err(|_| UserError::Internal("the hashing threads stopped"))?;
        result
            .await
            .map_err(|_| UserError::Internal("hashing task failed"))?
    }

    /// The PHC string for `password`, made on a hashing thread.
    pub async fn hash(&self, password: &SecretString) -> Result<String, UserError> {
        let pw = password.clone();
        self.run(move |inner, memory| {
            make_hash(memory, &inner.params, pw.expose_secret().as_bytes())
        })
        .await
    }

    /// Check `password` against `phc` (or against the dummy hash when `phc` is `None`, which always fails
    /// but takes the same time). Returns whether it matched and whether the hash should be remade because
    /// its parameters differ from the current ones.
    pub async fn verify(
        &self,
        password: &SecretString,
        phc: Option<String>,
    ) -> Result<Verified, UserError> {
        let pw = password.clone();
        self.run(move |inner, memory| {
            let real = phc.is_some();
            let stored = phc.unwrap_or_else(|| inner.dummy.clone());
            let parsed = match PasswordHash::new(&stored) {
                Ok(p) => p,
                // A damaged stored hash: verify against the dummy to keep the timing, then fail.
                Err(_) => {
                    let dummy = PasswordHash::new(&inner.dummy)
                        .map_err(|_| UserError::Internal("dummy hash unreadable"))?;
                    let _ = matches(memory, pw.expose_secret().as_bytes(), &dummy);
                    return Ok(Verified {
                        ok: false,
                        needs_rehash: false,
                    });
                }
            };
            let ok = matches(memory, pw.expose_secret().as_bytes(), &parsed) && real;
            let needs_rehash = ok && !matches_params(&parsed, &inner.params);
            Ok(Verified { ok, needs_rehash })
        })
        .await
    }
}

/// The result of [`Hasher::verify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    pub ok: bool,
    pub needs_rehash: bool,
}

fn matches_params(hash: &PasswordHash, current: &Params) -> bool {
    if hash.algorithm.as_str() != "argon2id" || hash.version != Some(0x13) {
        return false;
    }
    match Params::try_from(hash) {
        Ok(p) => {
            p.m_cost() == current.m_cost()
                && p.t_cost() == current.t_cost()
                && p.p_cost() == current.p_cost()
                && hash.hash.as_ref().map(|h| h.len()) == Some(Params::DEFAULT_OUTPUT_LEN)
        }
        Err(_) => false,
    }
}

/// Turn raw bytes (from standard input, say) into a password, refusing invalid UTF-8. The bytes are wiped
/// either way.
pub fn password_from_bytes(bytes: Vec<u8>) -> Result<SecretString, FieldError> {
    let bytes = Zeroizing::new(bytes);
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(SecretString::from(s)),
        Err(_) => Err(FieldError::new(
            "password",
            "the password is not valid UTF-8 text",
        )),
    }
}

/// Check a new password against the policy: length in characters, no control characters, not the user
/// name, not one of the common passwords, not one character repeated.
pub fn check_policy(password: &SecretString, user_name: &str) -> Result<(), FieldError> {
    let pw = password.expose_secret();
    let chars = pw.chars().count();
    if pw.is_empty() {
        return Err(FieldError::new("password", "enter a password"));
    }
    if chars < MIN_PASSWORD_CHARS {
        return Err(FieldError::new(
            "password",
            format!("the password must be at least {MIN_PASSWORD_CHARS} characters long"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(FieldError::new(
            "password",
            format!("the password must be at most {MAX_PASSWORD_CHARS} characters long"),
        ));
    }
    if pw.chars().any(char::is_control) {
        return Err(FieldError::new(
            "password",
            "the password must not contain control characters (tabs, line breaks)",
        ));
    }
    let lower = Zeroizing::new(pw.to_lowercase());
    // Short names ("mo") occur inside ordinary words; only names of 4 or more characters are looked for.
    if user_name.chars().count() >= 4 && lower.contains(&user_name.to_lowercase()) {
        return Err(FieldError::new(
            "password",
            "the password must not contain the user name",
        ));
    }
    let mut it = lower.chars();
    if let Some(first) = it.next() {
        if it.all(|c| c == first) {
            return Err(FieldError::new(
                "password",
                "the password must not be one character repeated",
            ));
        }
    }
    if is_common(&lower) {
        return Err(FieldError::new(
            "password",
            "this password is on a list of commonly used passwords; choose another",
        ));
    }
    Ok(())
}

fn is_common(lower: &str) -> bool {
    COMMON.contains(&lower)
        // Common passwords padded with digits or '!' to reach the length.
        || {
            let core = lower.trim_end_matches(|c: char| c.is_ascii_digit() || c == '!');
            core.len() >= 4 && COMMON_STEMS.contains(&core)
        }
}

/// Common passwords of 12 characters or more (shorter ones fail the length rule anyway), lower-case. From
/// the tops of the public breach-corpus lists (SecLists "10-million-password-list-top-*").
const COMMON: &[&str] = &[
    "123456789012",
    "1234567890123",
    "12345678901234",
    "123456789123",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "1qaz2wsx3edc4rfv",
    "qwertyuiopasdfghjkl",
    "qwertyuiop123",
    "qwertyuiopas",
    "qwerty123456",
    "qwerty1234567",
    "asdfghjkl123",
    "zxcvbnm12345",
    "passwordpassword",
    "password1234",
    "password12345",
    "password123456",
    "password123!",
    "p@ssw0rd1234",
    "p@$$w0rd1234",
    "iloveyou1234",
    "iloveyou123456",
    "letmein12345",
    "welcome12345",
    "welcome123456",
    "administrator",
    "administrator1",
    "changeme1234",
    "changemenow!",
    "trustno1trustno1",
    "abc123abc123",
    "abcdefghijkl",
    "abcdefghijklmnop",
    "abcd1234abcd1234",
    "football1234",
    "baseball1234",
    "superman1234",
    "starwars1234",
    "princess1234",
    "sunshine1234",
    "monkey123456",
    "dragon123456",
    "master123456",
    "shadow123456",
    "michael12345",
    "jennifer1234",
    "computer1234",
    "internet1234",
    "whatever1234",
    "1234qwerasdf",
    "1234qwerasdfzxcv",
    "q1w2e3r4t5y6",
    "a1b2c3d4e5f6",
    "aaaaaa111111",
    "qazwsxedcrfv",
    "qazwsxedc123",
    "zaq12wsxcde3",
    "0987654321qw",
    "987654321098",
    "111111111111",
    "123123123123",
    "121212121212",
    "112233445566",
    "147258369147",
    "789456123789",
    "correcthorsebatterystaple",
    "postgrespostgres",
    "postgres1234",
    "walden123456",
    "waldenwalden",
];

/// Words that are common passwords with digits or `!` appended to reach any length.
const COMMON_STEMS: &[&str] = &[
    "password",
    "passw0rd",
    "p@ssword",
    "p@ssw0rd",
    "qwerty",
    "qwertyuiop",
    "letmein",
    "welcome",
    "iloveyou",
    "admin",
    "administrator",
    "changeme",
    "monkey",
    "dragon",
    "football",
    "baseball",
    "master",
    "shadow",
    "superman",
    "sunshine",
    "princess",
    "trustno1",
    "abc",
    "abcdef",
    "abcd",
    "asdf",
    "asdfgh",
    "zxcvbn",
    "postgres",
    "walden",
    "secret",
    "root",
    "toor",
    "default",
    "test",
    "guest",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> SecretString {
        SecretString::from(x)
    }

    #[test]
    fn policy_accepts_a_reasonable_password() {
        check_policy(&s("correct horse battery"), "alice").unwrap();
        check_policy(&s("Ünïcødé pässwörd ✓"), "alice").unwrap();
    }

    #[test]
    fn policy_refuses_weak_passwords_with_a_field_error() {
        for (pw, needle) in [
            ("", "enter a password"),
            ("short", "at least 12"),
            ("elevenchars", "at least 12"),
            ("Password1234", "commonly used"),
            ("password12345678", "commonly used"),
            ("Qwerty123456!", "commonly used"),
            ("aaaaaaaaaaaaaaaa", "repeated"),
            ("xx-alice-password", "user name"),
            ("line\nbreak in it", "control"),
        ] {
            let err = check_policy(&s(pw), "Alice").unwrap_err();
            assert_eq!(err.field, "password");
            assert!(err.message.contains(needle), "{pw:?}: {err}");
        }
        let long = "x1".repeat(MAX_PASSWORD_CHARS);
        assert!(check_policy(&s(&long), "alice")
            .unwrap_err()
            .message
            .contains("at most"));
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert!(password_from_bytes(vec![0xff, 0xfe, b'a']).is_err());
        assert!(password_from_bytes(b"fine password".to_vec()).is_ok());
    }

    #[tokio::test]
    async fn hashes_verify_and_report_stale_parameters() {
        let cheap = HashParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        };
        let h = Hasher::new(cheap).unwrap();
        let phc = h.hash(&s("a good long password")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        let v = h
            .verify(&s("a good long password"), Some(phc.clone()))
            .await
            .unwrap();
        assert_eq!(
            v,
            Verified {
                ok: true,
                needs_rehash: false
            }
        );
        let v = h
            .verify(&s("a wrong long password"), Some(phc.clone()))
            .await
            .unwrap();
        assert!(!v.ok);
        // Unknown user: the dummy never matches, even with the dummy's own (unknown) password.
        assert!(!h.verify(&s("anything at all"), None).await.unwrap().ok);
        // Damaged stored hash: a plain failure, not an error.
        assert!(
            !h.verify(&s("anything at all"), Some("garbage".into()))
                .await
                .unwrap()
                .ok
        );

        let stronger = Hasher::new(HashParams {
            m_cost: 128,
            ..cheap
        })
        .unwrap();
        let v = stronger
            .verify(&s("a good long password"), Some(phc))
            .await
            .unwrap();
        assert_eq!(
            v,
            Verified {
                ok: true,
                needs_rehash: true
            }
        );
        assert!(!format!("{stronger:?}").contains("argon2id$"));
    }

    #[tokio::test]
    async fn hashes_made_by_the_argon2_crate_still_verify() {
        use argon2::PasswordHasher;
        let cheap = HashParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        };
        let params = Params::new(64, 1, 1, None).unwrap();
        // How hashes were made before the hashing threads kept their own memory.
        let legacy = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"a good long password")
            .unwrap()
            .to_string();
        let h = Hasher::new(cheap).unwrap();
        let v = h
            .verify(&s("a good long password"), Some(legacy.clone()))
            .await
            .unwrap();
        assert!(v.ok && !v.needs_rehash);
        assert!(
            !h.verify(&s("not the password!"), Some(legacy))
                .await
                .unwrap()
                .ok
        );
    }

    #[tokio::test]
    async fn a_full_hashing_queue_answers_busy() {
        let limits = HashLimits {
            permits: 1,
            queue_timeout: Duration::from_millis(1),
        };
        let cheap = HashParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        };
        let h = Hasher::with_limits(cheap, limits).unwrap();
        // Hold the only permit: the next caller cannot get one and is told so, instead of queueing for ever.
        let held = h.permit().await.unwrap();
        assert!(matches!(
            h.hash(&s("a good long password")).await,
            Err(UserError::Busy)
        ));
        drop(held);
        assert!(h.permit().await.is_ok());
    }
}
