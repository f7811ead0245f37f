//! Password hashing (argon2id, PHC strings) and the password policy.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
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

/// Hashes and verifies passwords on tokio's blocking pool. Cheap to clone.
#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
}

struct Inner {
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
            .finish()
    }
}

fn argon(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

impl Hasher {
    /// Build a hasher. Makes the dummy hash once (one hashing run).
    pub fn new(p: HashParams) -> Result<Self, UserError> {
        let params = Params::new(p.m_cost, p.t_cost, p.p_cost, None)
            .map_err(|_| UserError::Internal("invalid argon2 parameters"))?;
        let mut random = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut random[..]).map_err(|_| UserError::Internal("random"))?;
        let dummy = argon(&params)
            .hash_password(&random[..])
            .map_err(|_| UserError::Internal("hashing failed"))?
            .to_string();
        Ok(Hasher {
            inner: Arc::new(Inner { params, dummy }),
        })
    }

    /// The PHC string for `password`, made on the blocking pool.
    pub async fn hash(&self, password: &SecretString) -> Result<String, UserError> {
        let inner = self.inner.clone();
        let pw = password.clone();
        tokio::task::spawn_blocking(move || {
            argon(&inner.params)
                .hash_password(pw.expose_secret().as_bytes())
                .map(|h| h.to_string())
                .map_err(|_| UserError::Internal("hashing failed"))
        })
        .await
        .map_err(|_| UserError::Internal("hashing task failed"))?
    }

    /// Check `password` against `phc` (or against the dummy hash when `phc` is `None`, which always fails
    /// but takes the same time). Returns whether it matched and whether the hash should be remade because
    /// its parameters differ from the current ones.
    pub async fn verify(
        &self,
        password: &SecretString,
        phc: Option<String>,
    ) -> Result<Verified, UserError> {
        let inner = self.inner.clone();
        let pw = password.clone();
        tokio::task::spawn_blocking(move || {
            let real = phc.is_some();
            let stored = phc.unwrap_or_else(|| inner.dummy.clone());
            let parsed = match PasswordHash::new(&stored) {
                Ok(p) => p,
                // A damaged stored hash: verify against the dummy to keep the timing, then fail.
                Err(_) => {
                    let dummy = PasswordHash::new(&inner.dummy)
                        .map_err(|_| UserError::Internal("dummy hash unreadable"))?;
                    let _ =
                        argon(&inner.params).verify_password(pw.expose_secret().as_bytes(), &dummy);
                    return Ok(Verified {
                        ok: false,
                        needs_rehash: false,
                    });
                }
            };
            // argon2 compares the outputs in constant time (password-hash `Output`'s PartialEq).
            let ok = argon(&inner.params)
                .verify_password(pw.expose_secret().as_bytes(), &parsed)
                .is_ok()
                && real;
            let needs_rehash = ok && !matches_params(&parsed, &inner.params);
            Ok(Verified { ok, needs_rehash })
        })
        .await
        .map_err(|_| UserError::Internal("hashing task failed"))?
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
}
