//! Application-level encryption of stored state: AES-GCM.
//!
//! Each record gets a fresh random 12-byte nonce and is stored as nonce,
//! then the 16-byte tag, then the ciphertext: the Python eventsourcing
//! library's `AESCipher` layout, so its stores stay readable. Keys of 16,
//! 24 or 32 bytes (AES-128/192/256) are accepted, as base64 in
//! `CIPHER_KEY`.
//!
//! ```
//! use annals::cipher::{create_key, Cipher};
//! let cipher = Cipher::from_base64(&create_key())?;
//! let sealed = cipher.encrypt(b"secret")?;
//! assert_eq!(cipher.decrypt(&sealed).ok().as_deref(), Some(&b"secret"[..]));
//! # Ok::<(), annals::Error>(())
//! ```

use std::fmt;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{AeadCore, AeadInPlace, KeyInit, OsRng};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce, Tag};
use base64::Engine;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

type Aes192Gcm = AesGcm<aes::Aes192, U12>;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The setting that holds the key.
// A copy of the setting's name, kept (hidden) for code written against it:
// the one documented name is `settings::CIPHER_KEY`.
#[doc(hidden)]
pub const CIPHER_KEY: &str = crate::settings::CIPHER_KEY.name;

/// The values `CIPHER_TOPIC` may take: annals' own name and the Python
/// library's two AES-GCM ciphers (`eventsourcing.cipher` on PyCryptodome,
/// `eventsourcing.cryptography` on `cryptography`), which store the same
/// layout as this module (nonce, tag, ciphertext).
pub const TOPICS: &[&str] = &[
    "aes",
    "eventsourcing.cipher:AESCipher",
    "eventsourcing.cryptography:AESCipher",
];

/// Checks a `CIPHER_TOPIC` value (found as `var`): it must name AES-GCM,
/// the one cipher annals has.
///
/// ```
/// use annals::cipher::check_topic;
///
/// assert!(check_topic("CIPHER_TOPIC", "eventsourcing.cipher:AESCipher").is_ok());
/// assert!(check_topic("CIPHER_TOPIC", "rot13").is_err());
/// ```
///
/// # Errors
///
/// [`Error::Config`] naming `var` for any other value.
pub fn check_topic(var: &str, topic: &str) -> Result<()> {
    if TOPICS.contains(&topic.trim()) {
        return Ok(());
    }
    Err(Error::config(
        var,
        format!(
            "unknown cipher {topic:?}; annals has AES-GCM: {}",
            TOPICS
                .iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// A new random 32-byte key (AES-256), base64-encoded, for `CIPHER_KEY`
/// or `ApplicationBuilder::cipher_key`. Keep it safe: what it encrypted
/// cannot be read without it.
///
/// ```
/// let key = annals::cipher::create_key();
/// assert_eq!(key.len(), 44); // base64 of 32 bytes
/// let app = annals::Application::builder("Vault").cipher_key(key).build()?;
/// # Ok::<(), annals::Error>(())
/// ```
pub fn create_key() -> String {
    let key = Aes256Gcm::generate_key(&mut OsRng);
    base64::engine::general_purpose::STANDARD.encode(key)
}

#[derive(Clone)]
enum Aes {
    A128(Aes128Gcm),
    A192(Aes192Gcm),
    A256(Aes256Gcm),
}

/// Encrypts and decrypts with one key. `Debug` never shows the key.
///
/// ```
/// use annals::cipher::{Cipher, DecryptError};
///
/// let cipher = Cipher::new(&[7; 16])?; // AES-128
/// let sealed = cipher.encrypt(b"secret")?;
/// assert_eq!(cipher.decrypt(&sealed).unwrap(), b"secret");
/// let other = Cipher::new(&[8; 16])?;
/// assert!(matches!(other.decrypt(&sealed), Err(DecryptError::Authentication)));
/// assert!(Cipher::new(&[7; 20]).is_err()); // 16, 24 or 32 bytes
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Clone)]
pub struct Cipher {
    aes: Aes,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = match self.aes {
            Aes::A128(_) => 128,
            Aes::A192(_) => 192,
            Aes::A256(_) => 256,
        };
        write!(f, "Cipher(AES-{bits}-GCM)")
    }
}

/// Why a record did not decrypt.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    /// Shorter than a nonce and a tag.
    #[error("cannot decrypt: {0} bytes is too short for an encrypted record (nonce and tag alone take 28)")]
    Truncated(usize),
    /// The tag did not verify.
    #[error("cannot decrypt: authentication failed (a wrong CIPHER_KEY, stored bytes that were changed, or a state moved from another event; a store written without associated data needs CIPHER_ASSOCIATED_DATA=no)")]
    Authentication,
}

impl Cipher {
    /// A cipher with a raw key of 16, 24 or 32 bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] (naming `CIPHER_KEY`) for a key of another length.
    pub fn new(key: &[u8]) -> Result<Self> {
        let bad = || {
            Error::config(
                CIPHER_KEY,
                format!(
                    "an AES key has 16, 24 or 32 bytes, this one has {} bytes",
                    key.len()
                ),
            )
        };
        let aes = match key.len() {
            16 => Aes::A128(Aes128Gcm::new_from_slice(key).map_err(|_| bad())?),
            24 => Aes::A192(Aes192Gcm::new_from_slice(key).map_err(|_| bad())?),
            32 => Aes::A256(Aes256Gcm::new_from_slice(key).map_err(|_| bad())?),
            _ => return Err(bad()),
        };
        Ok(Self { aes })
    }

    /// A cipher with a base64-encoded key (as `CIPHER_KEY` holds it).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] (naming `CIPHER_KEY`) when it is not base64, or
    /// not of 16, 24 or 32 bytes.
    pub fn from_base64(key: &str) -> Result<Self> {
        // The decoding error quotes a symbol of the key and its offset: say
        // what is wrong, never what the key holds.
        let raw = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .map_err(|e| {
                    let why = match e {
                        base64::DecodeError::InvalidLength(len) => {
                            format!("{len} base64 symbols cannot encode whole bytes")
                        }
                        base64::DecodeError::InvalidByte(..)
                        | base64::DecodeError::InvalidLastSymbol(..) => {
                            "it holds a symbol that is not one of base64's (A-Z, a-z, 0-9, + \
                             and /, then = padding)"
                                .to_owned()
                        }
                        base64::DecodeError::InvalidPadding => "its = padding is wrong".to_owned(),
                    };
                    Error::config(
                        CIPHER_KEY,
                        format!(
                            "not valid base64: {why}; make a key with annals::cipher::create_key()"
                        ),
                    )
                })?,
        );
        Self::new(&raw)
    }

    /// `plaintext` sealed: nonce, tag, ciphertext (no associated data:
    /// the Python library's layout).
    ///
    /// # Errors
    ///
    /// [`Error::Persistence`] for a plaintext too long for AES-GCM (about
    /// 64 GiB).
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        self.encrypt_bound(plaintext, b"")
    }

    /// `plaintext` sealed and bound to `associated`: it decrypts only with
    /// the same associated data ([`decrypt_bound`](Self::decrypt_bound)),
    /// so a sealed state moved to another record is an error.
    ///
    /// ```
    /// use annals::cipher::{create_key, Cipher};
    /// let cipher = Cipher::from_base64(&create_key())?;
    /// let sealed = cipher.encrypt_bound(b"secret", b"dog-1/3")?;
    /// assert!(cipher.decrypt_bound(&sealed, b"dog-1/3").is_ok());
    /// assert!(cipher.decrypt_bound(&sealed, b"dog-2/3").is_err());
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The plaintext is longer than AES-GCM can seal (about 64 GiB).
    pub fn encrypt_bound(&self, plaintext: &[u8], associated: &[u8]) -> Result<Vec<u8>> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let mut out = Vec::with_capacity(NONCE_LEN + TAG_LEN + plaintext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&[0; TAG_LEN]);
        out.extend_from_slice(plaintext);
        let (head, body) = out.split_at_mut(NONCE_LEN + TAG_LEN);
        let tag = match &self.aes {
            Aes::A128(c) => c.encrypt_in_place_detached(&nonce, associated, body),
            Aes::A192(c) => c.encrypt_in_place_detached(&nonce, associated, body),
            Aes::A256(c) => c.encrypt_in_place_detached(&nonce, associated, body),
        }
        .map_err(|_| Error::persistence("encrypting", "the plaintext is too long for AES-GCM"))?;
        head[NONCE_LEN..].copy_from_slice(&tag);
        Ok(out)
    }

    /// The plaintext of a record sealed with no associated data.
    ///
    /// # Errors
    ///
    /// [`DecryptError::Truncated`] when it is too short to be one;
    /// [`DecryptError::Authentication`] for a wrong key or changed bytes.
    pub fn decrypt(&self, sealed: &[u8]) -> std::result::Result<Vec<u8>, DecryptError> {
        self.decrypt_bound(sealed, b"")
    }

    /// The plaintext of a record sealed with `associated` data.
    ///
    /// # Errors
    ///
    /// Too short to be sealed, or the key, a bit of the record or the
    /// associated data differ from the sealing ones.
    pub fn decrypt_bound(
        &self,
        sealed: &[u8],
        associated: &[u8],
    ) -> std::result::Result<Vec<u8>, DecryptError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(DecryptError::Truncated(sealed.len()));
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (tag, ciphertext) = rest.split_at(TAG_LEN);
        let nonce = Nonce::from_slice(nonce);
        let tag = Tag::from_slice(tag);
        let mut buffer = ciphertext.to_vec();
        match &self.aes {
            Aes::A128(c) => c.decrypt_in_place_detached(nonce, associated, &mut buffer, tag),
            Aes::A192(c) => c.decrypt_in_place_detached(nonce, associated, &mut buffer, tag),
            Aes::A256(c) => c.decrypt_in_place_detached(nonce, associated, &mut buffer, tag),
        }
        .map_err(|_| DecryptError::Authentication)?;
        Ok(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_python_librarys_cipher_topics_are_accepted_and_others_name_the_variable() {
        for topic in [
            "aes",
            " eventsourcing.cipher:AESCipher ",
            "eventsourcing.cryptography:AESCipher",
        ] {
            assert!(check_topic("CIPHER_TOPIC", topic).is_ok(), "{topic}");
        }
        for topic in ["rot13", "eventsourcing.cipher:Cipher", "AESCipher", ""] {
            match check_topic("APP_CIPHER_TOPIC", topic) {
                Err(Error::Config { setting, message }) => {
                    assert_eq!(setting, "APP_CIPHER_TOPIC");
                    assert!(
                        message.contains("unknown cipher") && message.contains("AESCipher"),
                        "{message}"
                    );
                }
                other => panic!("{topic:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn round_trips_with_every_key_size_and_a_fresh_nonce_each_time() {
        for len in [16, 24, 32] {
            let cipher = Cipher::new(&vec![7; len]).unwrap();
            let a = cipher.encrypt(b"hello").unwrap();
            let b = cipher.encrypt(b"hello").unwrap();
            assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN], "fresh nonce");
            assert_eq!(a.len(), NONCE_LEN + TAG_LEN + 5);
            assert_eq!(cipher.decrypt(&a).unwrap(), b"hello");
            assert_eq!(cipher.decrypt(&b).unwrap(), b"hello");
        }
    }

    #[test]
    fn wrong_keys_flipped_bits_and_truncation_are_errors() {
        let cipher = Cipher::from_base64(&create_key()).unwrap();
        let other = Cipher::from_base64(&create_key()).unwrap();
        let sealed = cipher.encrypt(b"{\"name\":\"Fido\"}").unwrap();
        assert!(matches!(
            other.decrypt(&sealed),
            Err(DecryptError::Authentication)
        ));
        for i in [0, NONCE_LEN, NONCE_LEN + TAG_LEN, sealed.len() - 1] {
            let mut flipped = sealed.clone();
            flipped[i] ^= 1;
            assert!(
                matches!(cipher.decrypt(&flipped), Err(DecryptError::Authentication)),
                "bit at {i}"
            );
        }
        assert!(matches!(
            cipher.decrypt(&sealed[..20]),
            Err(DecryptError::Truncated(20))
        ));
        assert!(matches!(
            cipher.decrypt(&sealed[..sealed.len() - 1]),
            Err(DecryptError::Authentication)
        ));
    }

    #[test]
    fn a_malformed_key_is_described_without_echoing_key_material() {
        use base64::Engine;
        // A valid key with one symbol that is not base64 ('!' = 33) at
        // offset 17.
        let mut key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned();
        key.replace_range(17..18, "!");
        let short = base64::engine::general_purpose::STANDARD.encode([0xabu8; 20]);
        for (key, says) in [
            (key.as_str(), "not valid base64"),
            (short.as_str(), "20 bytes"),
        ] {
            let err = Cipher::from_base64(key).unwrap_err();
            let shown = format!("{} {err:?}", err.report());
            assert!(shown.contains(says), "{shown}");
            assert!(!shown.contains("33") && !shown.contains("17"), "{shown}");
            for piece in key.as_bytes().windows(4) {
                let piece = std::str::from_utf8(piece).unwrap();
                assert!(!shown.contains(piece), "{piece:?} of the key in {shown}");
            }
        }
    }

    #[test]
    fn bad_keys_are_configuration_errors_naming_cipher_key() {
        use base64::Engine;
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 20]);
        for key in [short.as_str(), "not base64!", ""] {
            let err = Cipher::from_base64(key).unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{err}");
            assert!(err.to_string().contains("CIPHER_KEY"), "{err}");
        }
        assert_eq!(
            format!("{:?}", Cipher::new(&[0; 24]).unwrap()),
            "Cipher(AES-192-GCM)"
        );
    }
}
