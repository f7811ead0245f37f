//! One key sealing small secrets at rest with XChaCha20-Poly1305: the primitive under [`crate::keyring`].
//!
//! Services seal through a [`crate::keyring::Keyring`], which writes format version 2 (with a key id, see
//! there). [`SealKey::seal`] writes version 1, the format of TOTP secrets sealed before key ids existed:
//! `version (1 byte = 1) ‖ nonce (24 bytes, random) ‖ ciphertext+tag`, with the context as associated data.
//! It stays so that those values keep opening, and so tests can make one. The associated data binds the
//! value to what it is for (e.g. `walden/totp/user/12`), so a sealed value copied to another row does not
//! open. The key comes from the environment (a Fly secret) as 64 hex characters.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const VERSION: u8 = 1;
pub(crate) const NONCE_LEN: usize = 24;
/// Domain tag of the key-id hash.
const KEY_ID_DOMAIN: &[u8] = b"walden-key-id-v1\0";
/// Domain of the key fingerprints are made with ([`SealKey::fingerprint`]), apart from the sealing key.
const FINGERPRINT_DOMAIN: &[u8] = b"walden-fingerprint-key-v1\0";

/// Why a value could not be sealed or opened. Never carries key or plaintext material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the encryption key must be 64 hexadecimal characters (32 bytes)")]
    BadKey,
    #[error("the system random number generator failed")]
    Random,
    #[error("a sealed value could not be opened (wrong key, or the value was changed)")]
    Open,
    #[error("a value could not be sealed")]
    Seal,
}

/// A 32-byte key. `Debug` shows nothing of it.
pub struct SealKey(SecretBox<[u8; 32]>);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl Clone for SealKey {
    fn clone(&self) -> Self {
        SealKey(SecretBox::new(Box::new(*self.0.expose_secret())))
    }
}

impl SealKey {
    /// Parse 64 hex characters.
    pub fn from_hex(s: &SecretString) -> Result<Self, SealError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(s.expose_secret().trim(), &mut bytes[..])
            .map_err(|_| SealError::BadKey)?;
        Ok(SealKey(SecretBox::new(Box::new(*bytes))))
    }

    /// A fresh random key (tests, first start).
    pub fn generate() -> Result<Self, SealError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut bytes[..]).map_err(|_| SealError::Random)?;
        Ok(SealKey(SecretBox::new(Box::new(*bytes))))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(*self.0.expose_secret()))
    }

    /// A keyed fingerprint of `data` in `context`: HMAC-SHA-256 under a key derived from this one for
    /// fingerprints only (never the sealing key itself). Equal inputs give equal fingerprints under the same
    /// key, so rows can be compared ("unchanged since", "the same unknown name again") without the value being
    /// readable, or guessable without the key.
    pub fn fingerprint(&self, context: &str, data: &[u8]) -> Result<[u8; 32], SealError> {
        use hmac::{KeyInit, Mac};
        let mut derived = Zeroizing::new([0u8; 32]);
        derived.copy_from_slice(
            &Sha256::new()
                .chain_update(FINGERPRINT_DOMAIN)
                .chain_update(self.0.expose_secret())
                .finalize(),
        );
        // HMAC takes a key of any length, so this cannot fail; the error keeps it panic-free all the same.
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(derived.as_ref())
            .map_err(|_| SealError::BadKey)?;
        mac.update(context.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        Ok(mac.finalize().into_bytes().into())
    }

    /// The key's id: the first 8 bytes of `SHA-256("walden-key-id-v1\0" ‖ key)`. Says which key sealed a
    /// value without saying anything usable about the key.
    pub fn id(&self) -> KeyId {
        let digest = Sha256::new()
            .chain_update(KEY_ID_DOMAIN)
            .chain_update(self.0.expose_secret())
            .finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        KeyId(id)
    }

    /// A fresh random nonce.
    pub(crate) fn nonce() -> Result<[u8; NONCE_LEN], SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        Ok(nonce)
    }

    /// Encrypt `msg` with `nonce`, authenticating `aad` too.
    pub(crate) fn encrypt(
        &self,
        nonce: &[u8; NONCE_LEN],
        msg: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        self.cipher()
            .encrypt(&XNonce::from(*nonce), Payload { msg, aad })
            .map_err(|_| SealError::Seal)
    }

    /// Decrypt `ciphertext` (with its tag) sealed with `nonce` and `aad`.
    pub(crate) fn decrypt(
        &self,
        nonce: &[u8],
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Open)?;
        self.cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Open)
    }

    /// Seal `plaintext`, bound to `context`, in format version 1 (no key id; see the module docs).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<Vec<u8>, SealError> {
        let nonce = Self::nonce()?;
        let ct = self.encrypt(&nonce, plaintext, context.as_bytes())?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Open a value sealed for `context` in format version 1.
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let (&version, rest) = sealed.split_first().ok_or(SealError::Open)?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        self.decrypt(nonce, ct, context.as_bytes())
    }
}

/// Length of a [`KeyId`] in bytes.
pub const KEY_ID_LEN: usize = 8;

/// Which key sealed a value (see [`SealKey::id`]). Shown as 16 hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn fingerprints_are_keyed_and_bound_to_their_context() {
        let key = SealKey::generate().unwrap();
        let other = SealKey::generate().unwrap();
        let f = key.fingerprint("walden/a", b"value").unwrap();
        assert_eq!(f, key.fingerprint("walden/a", b"value").unwrap(), "stable");
        assert_ne!(f, key.fingerprint("walden/b", b"value").unwrap(), "context");
        assert_ne!(f, key.fingerprint("walden/a", b"valuf").unwrap(), "data");
        assert_ne!(f, other.fingerprint("walden/a", b"value").unwrap(), "key");
        // The context ends where the data begins: ("ab", "c") is not ("a", "bc").
        assert_ne!(
            key.fingerprint("ab", b"c").unwrap(),
            key.fingerprint("a", b"bc").unwrap()
        );
    }

    use super::*;

    #[test]
    fn seals_and_opens_bound_to_context() {
        let key = SealKey::generate().unwrap();
        let sealed = key.seal(b"top secret", "walden/totp/user/1").unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"top secret"));
        assert_eq!(
            &key.open(&sealed, "walden/totp/user/1").unwrap()[..],
            b"top secret"
        );
        assert_eq!(
            key.open(&sealed, "walden/totp/user/2").unwrap_err(),
            SealError::Open
        );
        let other = SealKey::generate().unwrap();
        assert_eq!(
            other.open(&sealed, "walden/totp/user/1").unwrap_err(),
            SealError::Open
        );
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(key.open(&flipped, "walden/totp/user/1").is_err());
        assert!(key.open(&[], "x").is_err());
        assert!(key.open(&[1, 2, 3], "x").is_err());
    }

    #[test]
    fn keys_parse_from_hex_and_hide_in_debug() {
        let hex_key = SecretString::from("00".repeat(31) + "ff");
        let key = SealKey::from_hex(&hex_key).unwrap();
        assert_eq!(format!("{key:?}"), "SealKey(..)");
        assert_eq!(
            SealKey::from_hex(&SecretString::from("zz")).unwrap_err(),
            SealError::BadKey
        );
        assert_eq!(
            SealKey::from_hex(&SecretString::from("00".repeat(16))).unwrap_err(),
            SealError::BadKey
        );
    }
}
