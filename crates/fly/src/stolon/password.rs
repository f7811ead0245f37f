//! Passwords for the Stolon image's roles (`SU_PASSWORD` → flypgadmin, `REPL_PASSWORD` →
//! repluser, `OPERATOR_PASSWORD` → postgres): a generator and a validator that accept only what
//! the image survives.
//!
//! Why only letters and digits:
//! * fly-apps/postgres-ha `pkg/flyunlock/unlock.go::createRequiredUsers` (run when
//!   `FLY_RESTORED_FROM` is set) and `pkg/flypg/admin/admin.go::{CreateUser,ChangePassword}` paste
//!   the password into `… PASSWORD '%s'` unescaped: a `'` breaks the SQL, `cmd/start` panics and
//!   the Machine boot-loops.
//! * stolon `internal/postgresql/postgresql.go` writes the replication password into a pgpass
//!   line `host:port:*:user:password` unescaped: a `:` or `\` breaks pg_rewind and replica resync.
//! * flyctl itself only ever generates `[A-Za-z0-9]{15}` (`helpers/rand.go::RandString`, called
//!   from `flypg/launcher.go::setSecrets`).
//!
//! Invariants: [`generate`] returns [`GENERATED_LENGTH`] characters drawn uniformly from
//! [`ALPHABET`] by the operating system's random source; every generated password passes
//! [`validate`]; [`validate`] accepts exactly the passwords of at least [`MIN_LENGTH`] characters
//! made of [`ALPHABET`] only.

use std::fmt;

use secrecy::SecretString;
use zeroize::Zeroize;

/// The characters a password may hold: flyctl's `helpers/rand.go` charset.
pub const ALPHABET: &[u8; 62] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// The length of a generated password (about 190 bits; flyctl uses 15 characters).
pub const GENERATED_LENGTH: usize = 32;

/// The shortest password accepted: the length flyctl generates, so clusters made by
/// `fly pg create` pass.
pub const MIN_LENGTH: usize = 15;

/// Why a password would break the Stolon image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordProblem {
    /// Shorter than [`MIN_LENGTH`] (an empty password included).
    TooShort { length: usize },
    /// A character outside [`ALPHABET`], with its 0-based position (in characters).
    Forbidden { character: char, position: usize },
}

impl fmt::Display for PasswordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordProblem::TooShort { length } => write!(
                f,
                "the password has {length} characters; at least {MIN_LENGTH} are needed"
            ),
            PasswordProblem::Forbidden {
                character,
                position,
            } => write!(
                f,
                "character {} of the password is {character:?}: {}",
                position + 1,
                forbidden_reason(*character)
            ),
        }
    }
}

impl std::error::Error for PasswordProblem {}

/// The operating system's random source could not be read, so no password was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RandomSourceFailed(String);

impl fmt::Display for RandomSourceFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot generate a password: the system's random source failed: {}",
            self.0
        )
    }
}

impl std::error::Error for RandomSourceFailed {}

/// What goes wrong on Fly with a character outside [`ALPHABET`].
fn forbidden_reason(character: char) -> &'static str {
    match character {
        '\'' => "a quote breaks the image's ALTER USER … PASSWORD '…' when restoring (FLY_RESTORED_FROM), and the Machine boot-loops; use only letters and digits",
        ':' | '\\' => "it breaks the pgpass line Stolon writes for replication, so replicas cannot resync; use only letters and digits",
        _ => "the Stolon image is only known to handle letters A–Z, a–z and digits 0–9 (what flyctl generates)",
    }
}

/// Check a password before it becomes a cluster secret.
pub fn validate(password: &str) -> Result<(), PasswordProblem> {
    if let Some((position, character)) = password
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii() || !ALPHABET.contains(&(*c as u8)))
    {
        return Err(PasswordProblem::Forbidden {
            character,
            position,
        });
    }
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(PasswordProblem::TooShort { length });
    }
    Ok(())
}

/// A new random password of [`GENERATED_LENGTH`] characters from [`ALPHABET`].
pub fn generate() -> Result<SecretString, RandomSourceFailed> {
    let mut password = String::with_capacity(GENERATED_LENGTH);
    let mut random = [0u8; 64];
    while password.len() < GENERATED_LENGTH {
        getrandom::fill(&mut random).map_err(|e| RandomSourceFailed(e.to_string()))?;
        push_uniform(&mut password, &random);
    }
    random.zeroize();
    Ok(SecretString::from(password))
}

/// Append characters for the random bytes that map uniformly onto [`ALPHABET`] (bytes at or
/// above the largest multiple of 62 are dropped, so no character is favoured).
fn push_uniform(password: &mut String, random: &[u8]) {
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    for byte in random.iter().filter(|b| **b < limit) {
        if password.len() == GENERATED_LENGTH {
            return;
        }
        password.push(char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn generated_passwords_are_long_alphanumeric_and_pass_the_validator() {
        let first = generate().unwrap();
        let second = generate().unwrap();
        for password in [&first, &second] {
            let text = password.expose_secret();
            assert_eq!(text.len(), GENERATED_LENGTH);
            assert!(text.bytes().all(|b| b.is_ascii_alphanumeric()), "{text}");
            assert_eq!(validate(text), Ok(()));
        }
        assert_ne!(first.expose_secret(), second.expose_secret());
    }

    #[test]
    fn bytes_past_the_last_multiple_of_62_are_dropped() {
        let mut password = String::new();
        push_uniform(&mut password, &[248, 255, 0, 61, 62, 247]);
        assert_eq!(password, "a9a9");
    }

    /// postgres-ha `pkg/flyunlock/unlock.go::createRequiredUsers`: `'` breaks the SQL.
    #[test]
    fn a_quote_is_refused_naming_the_restore_failure() {
        let problem = validate("abcdefghij'klmnopq").unwrap_err();
        assert_eq!(
            problem,
            PasswordProblem::Forbidden {
                character: '\'',
                position: 10
            }
        );
        let text = problem.to_string();
        assert!(text.contains("character 11"), "{text}");
        assert!(text.contains("FLY_RESTORED_FROM"), "{text}");
    }

    /// stolon `internal/postgresql/postgresql.go`: pgpass `host:port:*:user:password` unescaped.
    #[test]
    fn a_colon_or_backslash_is_refused_naming_replica_resync() {
        for bad in ["abcdefghijklmno:p", "abcdefghijklmno\\p"] {
            let text = validate(bad).unwrap_err().to_string();
            assert!(text.contains("pgpass"), "{text}");
        }
    }

    #[test]
    fn other_symbols_short_and_empty_passwords_are_refused() {
        assert!(matches!(
            validate("abcdefghijklmno$"),
            Err(PasswordProblem::Forbidden { character: '$', .. })
        ));
        assert!(matches!(
            validate("abcdefghijklmnoé"),
            Err(PasswordProblem::Forbidden {
                character: 'é', ..
            })
        ));
        assert_eq!(validate(""), Err(PasswordProblem::TooShort { length: 0 }));
        assert_eq!(
            validate("abc123"),
            Err(PasswordProblem::TooShort { length: 6 })
        );
        // flyctl's own 15-character passwords pass.
        assert_eq!(validate("Ab3dE6gH9jK2mN5"), Ok(()));
    }
}
