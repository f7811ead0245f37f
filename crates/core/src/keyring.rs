//! The keys that seal secrets at rest, each with an id, owned by [`crate::Walden`] and shared by every service
//! that seals (TOTP secrets today, credential escrow next).
//!
//! # Sealed format (version 2)
//!
//! `0x02 ‖ key id (8 bytes, see [`SealKey::id`]) ‖ nonce (24 bytes, random) ‖ ciphertext+tag`
//! (XChaCha20-Poly1305). The associated data is the 9-byte header (version and key id) followed by the
//! context (e.g. `walden/totp/user/12`), so neither the key id nor the value's purpose can be swapped.
//!
//! # Invariants
//!
//! - New values are always sealed with the *primary* key, in version 2.
//! - A version-2 value opens only with the key its id names; an unknown id is an error, not a guess.
//! - Version-1 values (sealed before key ids existed, `0x01 ‖ nonce ‖ ciphertext+tag`, context alone as
//!   associated data) keep opening: each key is tried, primary first.
//! - Rotation: make the new key primary and keep the old one as *retired* ([`Keyring::with_retired`]); old
//!   values still open, new ones use the new key.
//! - `Debug` shows key ids only.

use std::sync::Arc;

use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::seal::NONCE_LEN;
pub use crate::seal::{KeyId, SealError, SealKey, KEY_ID_LEN};

const VERSION: u8 = 2;
const LEGACY_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + KEY_ID_LEN;

/// A primary key that seals, and retired keys that only open. Cheap to clone (shared).
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Keys>,
}

#[derive(Clone)]
struct Keys {
    primary: SealKey,
    primary_id: KeyId,
    retired: Vec<(KeyId, SealKey)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let retired: Vec<KeyId> = self.inner.retired.iter().map(|(id, _)| *id).collect();
        f.debug_struct("Keyring")
            .field("primary", &self.inner.primary_id)
            .field("retired", &retired)
            .finish()
    }
}

impl Keyring {
    /// A keyring with one key, which seals.
    pub fn new(primary: SealKey) -> Self {
        Keyring {
            inner: Arc::new(Keys {
                primary_id: primary.id(),
                primary,
                retired: Vec::new(),
            }),
        }
    }

    /// The master key from the environment (`WALDEN_MASTER_KEY`): 64 hexadecimal characters.
    pub fn from_master_hex(hex: &SecretString) -> Result<Self, SealError> {
        Ok(Keyring::new(SealKey::from_hex(hex)?))
    }

    /// A keyring with one fresh random key (tests).
    pub fn generate() -> Result<Self, SealError> {
        Ok(Keyring::new(SealKey::generate()?))
    }

    /// Keep `key` to open values it sealed; it never seals again.
    pub fn with_retired(mut self, key: SealKey) -> Self {
        let id = key.id();
        Arc::make_mut(&mut self.inner).retired.push((id, key));
        self
    }

    /// A keyed fingerprint of `data` in `context` under the primary key (see [`SealKey::fingerprint`]).
    pub fn fingerprint(&self, context: &str, data: &[u8]) -> Result<[u8; 32], SealError> {
        self.inner.primary.fingerprint(context, data)
    }

    /// The ids of the retired keys, in the order they were given.
    pub fn retired_ids(&self) -> Vec<KeyId> {
        self.inner.retired.iter().map(|(id, _)| *id).collect()
    }

    /// The id of the key that seals new values.
    pub fn primary_id(&self) -> KeyId {
        self.inner.primary_id
    }

    /// The id of the key that sealed `sealed`, when it says (version 2).
    pub fn key_id_of(sealed: &[u8]) -> Option<KeyId> {
        match sealed {
            [VERSION, rest @ ..] if rest.len() >= KEY_ID_LEN => {
                let mut id = [0u8; KEY_ID_LEN];
                id.copy_from_slice(&rest[..KEY_ID_LEN]);
                Some(KeyId(id))
            }
            _ => None,
        }
    }

    /// Seal `plaintext` for `context` with the primary key.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<Vec<u8>, SealError> {
        let header = header(self.inner.primary_id);
        let nonce = SealKey::nonce()?;
        let ciphertext =
            self.inner
                .primary
                .encrypt(&nonce, plaintext, &associated_data(&header, context))?;
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Open a value sealed for `context` (version 2, or version 1 from before key ids).
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
        match sealed.first() {
            Some(&VERSION) => self.open_current(sealed, context),
            Some(&LEGACY_VERSION) => self.open_legacy(sealed, context),
            _ => Err(SealError::Open),
        }
    }

    fn open_current(&self, sealed: &[u8], context: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() < HEADER_LEN + NONCE_LEN {
            return Err(SealError::Open);
        }
        let id = Self::key_id_of(sealed).ok_or(SealError::Open)?;
        let key = self.key(id).ok_or(SealError::Open)?;
        let (header, rest) = sealed.split_at(HEADER_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        key.decrypt(nonce, ciphertext, &associated_data(header, context))
    }

    fn open_legacy(&self, sealed: &[u8], context: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
        std::iter::once(&self.inner.primary)
            .chain(self.inner.retired.iter().map(|(_, key)| key))
            .find_map(|key| key.open(sealed, context).ok())
            .ok_or(SealError::Open)
    }

    fn key(&self, id: KeyId) -> Option<&SealKey> {
        if id == self.inner.primary_id {
            return Some(&self.inner.primary);
        }
        self.inner
            .retired
            .iter()
            .find(|(retired, _)| *retired == id)
            .map(|(_, key)| key)
    }
}

fn header(id: KeyId) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0] = VERSION;
    header[1..].copy_from_slice(&id.0);
    header
}

fn associated_data(header: &[u8], context: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + context.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(context.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXT: &str = "walden/totp/user/1";

    #[test]
    fn seals_with_the_primary_key_id_and_opens_bound_to_context() {
        let ring = Keyring::generate().unwrap();
        let sealed = ring.seal(b"top secret", CONTEXT).unwrap();
        assert_eq!(sealed[0], 2);
        assert_eq!(Keyring::key_id_of(&sealed), Some(ring.primary_id()));
        assert!(!sealed.windows(10).any(|w| w == b"top secret"));
        assert_eq!(&ring.open(&sealed, CONTEXT).unwrap()[..], b"top secret");
        assert_eq!(
            ring.open(&sealed, "walden/totp/user/2").unwrap_err(),
            SealError::Open
        );
        let other = Keyring::generate().unwrap();
        assert_eq!(other.open(&sealed, CONTEXT).unwrap_err(), SealError::Open);
        assert!(ring.open(&[], CONTEXT).is_err());
        assert!(ring.open(&[2, 1, 2, 3], CONTEXT).is_err());
        assert!(ring.open(&[9; 64], CONTEXT).is_err());
    }

    #[test]
    fn a_changed_key_id_does_not_open() {
        let key = SealKey::generate().unwrap();
        let old = SealKey::generate().unwrap();
        let old_id = old.id();
        let ring = Keyring::new(key.clone()).with_retired(old);
        let mut sealed = ring.seal(b"x", CONTEXT).unwrap();
        // Claiming another key of the ring does not open.
        sealed[1..1 + KEY_ID_LEN].copy_from_slice(&old_id.0);
        assert!(ring.open(&sealed, CONTEXT).is_err());
    }

    /// TOTP secrets sealed before key ids existed (version 1) still open.
    #[test]
    fn version_one_values_still_open() {
        let key = SealKey::from_hex(&SecretString::from("00".repeat(31) + "ff")).unwrap();
        let legacy = key.seal(b"old secret", CONTEXT).unwrap();
        assert_eq!(legacy[0], 1);
        assert_eq!(Keyring::key_id_of(&legacy), None);
        let ring = Keyring::new(key.clone());
        assert_eq!(&ring.open(&legacy, CONTEXT).unwrap()[..], b"old secret");
        assert!(ring.open(&legacy, "walden/totp/user/2").is_err());
        // After a rotation too, through the retired key.
        let rotated = Keyring::generate().unwrap().with_retired(key);
        assert_eq!(&rotated.open(&legacy, CONTEXT).unwrap()[..], b"old secret");
    }

    #[test]
    fn rotation_keeps_old_values_open_and_seals_with_the_new_key() {
        let old = SealKey::generate().unwrap();
        let before = Keyring::new(old.clone());
        let sealed_before = before.seal(b"v1", CONTEXT).unwrap();
        let new = SealKey::generate().unwrap();
        let after = Keyring::new(new.clone()).with_retired(old.clone());
        assert_eq!(&after.open(&sealed_before, CONTEXT).unwrap()[..], b"v1");
        let sealed_after = after.seal(b"v2", CONTEXT).unwrap();
        assert_eq!(Keyring::key_id_of(&sealed_after), Some(new.id()));
        assert_ne!(new.id(), old.id());
        assert!(before.open(&sealed_after, CONTEXT).is_err());
    }

    #[test]
    fn key_ids_are_stable_and_debug_shows_only_ids() {
        let hex = SecretString::from("00".repeat(31) + "ff");
        let a = Keyring::from_master_hex(&hex).unwrap();
        let b = Keyring::from_master_hex(&hex).unwrap();
        assert_eq!(a.primary_id(), b.primary_id());
        assert_eq!(a.primary_id().to_string().len(), 2 * KEY_ID_LEN);
        let debug = format!("{a:?}");
        assert!(debug.contains(&a.primary_id().to_string()), "{debug}");
        assert!(!debug.contains(&"00".repeat(31)), "{debug}");
        assert_eq!(
            Keyring::from_master_hex(&SecretString::from("zz")).unwrap_err(),
            SealError::BadKey
        );
    }
}
