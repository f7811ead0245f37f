//! Signed checkpoints of the audit log's head, kept outside the database, so the log proves itself against
//! someone who can write the SQLite file (CloudTrail's signed digest files are the model).
//!
//! The hash chain in [`crate::audit`] catches a row changed, removed or reordered *inside* the chain, but not
//! a wholesale recompute, rows cut from the end together with `sqlite_sequence`, or a wiped table: all of
//! those leave a chain that is consistent with itself. A [`Checkpoint`] records the head row (id and hash),
//! the row count and the time, is signed with an Ed25519 key that is not in the database ([`CheckpointKey`];
//! its id is in the checkpoint), is chained to the checkpoint before it (`previous` is that checkpoint's
//! signature, as CloudTrail's `previousDigestSignature`), and is written once to a [`Sink`] that is not the
//! database file (object storage, or a directory).
//!
//! The server writes one every interval even when no row was added (a heartbeat: a missing interval is
//! then visible), as soon as N rows were added since the last one, at start and at clean shutdown
//! ([`Checkpointer`]). [`verify`] checks a log against the checkpoints and reports rewritten rows, rows cut
//! from the end, a wiped log, a missing checkpoint interval, a missing or replaced checkpoint, and a checkpoint
//! signed by a key the verifier does not trust.
//!
//! # Signed form (format `walden-audit-checkpoint-v1`)
//!
//! A checkpoint is one JSON object: the [`CheckpointBody`] fields in their declared order, then `signature`
//! (hex). The signature is Ed25519 over `walden-audit-checkpoint-v1\0` followed by the body serialised as
//! compact JSON in that order ([`CheckpointBody::signed_bytes`]). The key id is `ed25519:` and the first 8
//! bytes of SHA-256 of the 32-byte public key, in hex ([`key_id`]). A verifier needs only the public key.
//!
//! # Which key signs
//!
//! `WALDEN_AUDIT_SIGNING_KEY` (or `..._FILE`): 64 hex characters, the Ed25519 seed; the best choice, as it is
//! a secret of its own. Without it, a key derived from the master key with the context
//! `walden/audit-checkpoint-signing-key/v1` (rotating the master key then changes the checkpoint key: keep
//! the old public key to verify old checkpoints). In demo mode without either, a key stored in the demo
//! directory (same disk: demonstration only).

mod sink;
mod verify;
mod writer;

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::keyring::Keyring;

pub use sink::{Sink, SinkError};
pub use verify::{verify, CheckpointReport, Finding};
pub use writer::{Checkpointer, WriteError, Written};

/// The `format` of every checkpoint this version writes, and the domain tag of its signature.
pub const FORMAT: &str = "walden-audit-checkpoint-v1";
const SIGNING_DOMAIN: &[u8] = b"walden-audit-checkpoint-v1\0";
/// Context of the signing key derived from the master key (never the sealing key itself).
const DERIVED_KEY_CONTEXT: &str = "walden/audit-checkpoint-signing-key/v1";

/// Why a checkpoint was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// The server started (the interval before it may be empty if the previous run ended with `shutdown`).
    Start,
    /// The heartbeat: the interval passed.
    Interval,
    /// N rows were added since the last checkpoint.
    Rows,
    /// Clean shutdown: no checkpoint is expected until the next `start`.
    Shutdown,
    /// Written by hand (`walden audit checkpoint`).
    Manual,
}

/// What a checkpoint states, in signing order (the order of the fields is part of the format).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointBody {
    /// [`FORMAT`].
    pub format: String,
    /// The signing key's id ([`key_id`]).
    pub key_id: String,
    /// 1 for the first checkpoint of a sink, then +1 each.
    pub seq: u64,
    pub reason: Reason,
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, UTC.
    pub written_at: String,
    /// The heartbeat interval the writer promised: the next checkpoint is due within it (unless `shutdown`).
    pub interval_secs: u64,
    /// The last row's id; 0 for an empty log.
    pub head_id: i64,
    /// The last row's hash, hex; `None` for an empty log.
    pub head_hash: Option<String>,
    /// How many rows the log held.
    pub rows: u64,
    /// The previous checkpoint's `signature`; `None` for the first.
    pub previous: Option<String>,
}

impl CheckpointBody {
    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = SIGNING_DOMAIN.to_vec();
        // Serialising a struct of strings and integers cannot fail; an empty body would not verify anyway.
        out.extend_from_slice(&serde_json::to_vec(self).unwrap_or_default());
        out
    }

    /// The object name: sorts by time, then head, and never repeats (`written_at` has milliseconds, `seq` is
    /// unique per sink).
    pub fn object_name(&self) -> String {
        let stamp: String = self
            .written_at
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        format!("{stamp}-{:010}-{:020}.json", self.seq, self.head_id.max(0))
    }
}

/// A signed checkpoint, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    #[serde(flatten)]
    pub body: CheckpointBody,
    /// Ed25519 signature over [`CheckpointBody::signed_bytes`], hex.
    pub signature: String,
}

impl Checkpoint {
    /// Whether `key` signed this checkpoint.
    pub fn signed_by(&self, key: &VerifyingKey) -> bool {
        let Ok(bytes) = hex::decode(&self.signature) else {
            return false;
        };
        let Ok(sig) = ed25519_dalek::Signature::from_slice(&bytes) else {
            return false;
        };
        key.verify(&self.body.signed_bytes(), &sig).is_ok()
    }
}

/// The id of a public key: `ed25519:` and the first 8 bytes of its SHA-256, hex.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("ed25519:{}", hex::encode(&digest[..8]))
}

/// Why a key could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the audit signing key must be 64 hexadecimal characters (32 bytes); generate one with `openssl rand -hex 32`")]
    BadSigningKey,
    #[error("{0:?} is not an Ed25519 public key (64 hexadecimal characters)")]
    BadPublicKey(String),
    #[error("the audit signing key could not be derived from the master key")]
    Derive,
    #[error("no random numbers are available to make a key")]
    Random,
}

/// The key that signs checkpoints. `Debug` shows its id only.
#[derive(Clone)]
pub struct CheckpointKey {
    key: SigningKey,
    id: String,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CheckpointKey").field(&self.id).finish()
    }
}

impl CheckpointKey {
    fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let id = key_id(&key.verifying_key());
        CheckpointKey { key, id }
    }

    /// The seed as 64 hex characters (`WALDEN_AUDIT_SIGNING_KEY`).
    pub fn from_hex(s: &SecretString) -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(s.expose_secret().trim(), &mut seed[..])
            .map_err(|_| KeyError::BadSigningKey)?;
        Ok(Self::from_seed(&seed))
    }

    /// A key derived from the master key for this purpose only (a keyed fingerprint in its own context).
    pub fn derived_from(keyring: &Keyring) -> Result<Self, KeyError> {
        let seed = Zeroizing::new(
            keyring
                .fingerprint(DERIVED_KEY_CONTEXT, b"")
                .map_err(|_| KeyError::Derive)?,
        );
        Ok(Self::from_seed(&seed))
    }

    /// A fresh random key, as 64 hex characters to store (demo mode, tests).
    pub fn generate_hex() -> Result<SecretString, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut seed[..]).map_err(|_| KeyError::Random)?;
        Ok(SecretString::from(hex::encode(&seed[..])))
    }

    /// The key id recorded in each checkpoint.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The public key, which is all a verifier needs.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key, hex (for `--public-key`).
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Sign `body` (whose `key_id` must be this key's).
    pub fn sign(&self, body: CheckpointBody) -> Checkpoint {
        let signature = self.key.sign(&body.signed_bytes());
        Checkpoint {
            body,
            signature: hex::encode(signature.to_bytes()),
        }
    }
}

/// Parse a public key given as 64 hex characters.
pub fn parse_public_key(s: &str) -> Result<VerifyingKey, KeyError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut bytes[..]).map_err(|_| KeyError::BadPublicKey(s.into()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::BadPublicKey(s.into()))
}

pub use ed25519_dalek::VerifyingKey as PublicKey;

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> CheckpointBody {
        CheckpointBody {
            format: FORMAT.into(),
            key_id: String::new(),
            seq: 1,
            reason: Reason::Interval,
            written_at: "2026-11-30T10:00:00.000Z".into(),
            interval_secs: 300,
            head_id: 7,
            head_hash: Some("ab".repeat(32)),
            rows: 7,
            previous: None,
        }
    }

    #[test]
    fn a_signature_covers_every_field_and_names_its_key() {
        let key = CheckpointKey::from_hex(&CheckpointKey::generate_hex().unwrap()).unwrap();
        let other = CheckpointKey::from_hex(&CheckpointKey::generate_hex().unwrap()).unwrap();
        let cp = key.sign(CheckpointBody {
            key_id: key.id().into(),
            ..body()
        });
        assert!(cp.signed_by(&key.public_key()));
        assert!(!cp.signed_by(&other.public_key()));
        let mut changed = cp.clone();
        changed.body.head_id = 6;
        assert!(!changed.signed_by(&key.public_key()));
        // Round trip through the stored JSON.
        let stored: Checkpoint =
            serde_json::from_str(&serde_json::to_string(&cp).unwrap()).unwrap();
        assert!(stored.signed_by(&key.public_key()));
        assert!(key.id().starts_with("ed25519:") && key.id().len() == 8 + 16);
        assert_eq!(
            parse_public_key(&key.public_key_hex()).unwrap(),
            key.public_key()
        );
        assert!(!format!("{key:?}").contains(&key.public_key_hex()));
    }

    #[test]
    fn the_derived_key_depends_on_the_master_key_only() {
        let ring = Keyring::generate().unwrap();
        let a = CheckpointKey::derived_from(&ring).unwrap();
        let b = CheckpointKey::derived_from(&ring).unwrap();
        let c = CheckpointKey::derived_from(&Keyring::generate().unwrap()).unwrap();
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), c.id());
    }

    #[test]
    fn object_names_sort_by_time() {
        let a = body();
        let b = CheckpointBody {
            written_at: "2026-11-30T10:05:00.000Z".into(),
            seq: 2,
            ..body()
        };
        assert!(a.object_name() < b.object_name());
        assert_eq!(
            a.object_name(),
            "20261130T100000000Z-0000000001-00000000000000000007.json"
        );
    }
}
