//! The raw baselines: the same rows written and read with the drivers
//! alone (rusqlite, postgres, object_store), the same JSON and codec, no
//! framework.

mod my;
mod object;
mod pg;
mod sqlite;
mod sut;

use std::borrow::Cow;

use aes_gcm::aead::{AeadCore, AeadInPlace, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Nonce};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use uuid::Uuid;

use crate::workload::{fail, Res};

pub(crate) use my::MyStore;
pub(crate) use object::{s3_store, ObjStore};
pub(crate) use pg::PgStore;
pub(crate) use sqlite::SqliteStore;
pub(crate) use sut::RawSut;

/// How `state` is encoded: compact JSON, or JSON then zlib (level 6) then
/// AES-256-GCM with a fresh random nonce (nonce ‖ ciphertext ‖ tag).
pub(crate) enum Codec {
    /// Plain JSON.
    Json,
    /// zlib then AES-256-GCM.
    ZlibAes {
        /// The cipher (a random key per run).
        cipher: Box<Aes256Gcm>,
        /// A compressor, reset per record.
        z: Box<Compress>,
        /// A decompressor, reset per record.
        unz: Box<Decompress>,
    },
}

impl Codec {
    /// zlib-aes with a fresh random 256-bit key.
    pub(crate) fn zlib_aes() -> Self {
        Self::zlib_aes_with(Aes256Gcm::new(&Aes256Gcm::generate_key(OsRng)))
    }

    fn zlib_aes_with(cipher: Aes256Gcm) -> Self {
        Codec::ZlibAes {
            cipher: Box::new(cipher),
            z: Box::new(Compress::new(Compression::default(), true)),
            unz: Box::new(Decompress::new(true)),
        }
    }

    /// The same codec (the same key) for another thread.
    fn fork(&self) -> Self {
        match self {
            Codec::Json => Codec::Json,
            Codec::ZlibAes { cipher, .. } => Self::zlib_aes_with((**cipher).clone()),
        }
    }

    fn seal(&mut self, json: Vec<u8>) -> Res<Vec<u8>> {
        let Codec::ZlibAes { cipher, z, .. } = self else {
            return Ok(json);
        };
        z.reset();
        let mut out = Vec::with_capacity(json.len() + 64);
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        out.extend_from_slice(&nonce);
        loop {
            let consumed = usize::try_from(z.total_in())?;
            let input = json.get(consumed..).unwrap_or_default();
            // compress_vec appends after out's current length.
            match z.compress_vec(input, &mut out, FlushCompress::Finish)? {
                Status::StreamEnd => break,
                _ => out.reserve(out.capacity().max(64)),
            }
        }
        let mut body = out.split_off(nonce.len());
        cipher
            .encrypt_in_place(&nonce, b"", &mut body)
            .map_err(|_| "AES-GCM encryption failed")?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    fn open<'a>(&mut self, state: &'a [u8]) -> Res<Cow<'a, [u8]>> {
        let Codec::ZlibAes { cipher, unz, .. } = self else {
            return Ok(Cow::Borrowed(state));
        };
        if state.len() < 12 + 16 {
            return fail("sealed state too short".into());
        }
        let (nonce, body) = state.split_at(12);
        let mut plain = body.to_vec();
        cipher
            .decrypt_in_place(Nonce::from_slice(nonce), b"", &mut plain)
            .map_err(|_| "AES-GCM authentication failed")?;
        unz.reset(true);
        let mut out = Vec::with_capacity(plain.len() * 4 + 64);
        loop {
            let consumed = usize::try_from(unz.total_in())?;
            let input = plain.get(consumed..).unwrap_or_default();
            let before = unz.total_out();
            match unz.decompress_vec(input, &mut out, FlushDecompress::None)? {
                Status::StreamEnd => return Ok(Cow::Owned(out)),
                _ if out.len() == out.capacity() => out.reserve(out.capacity()),
                _ if unz.total_out() == before => return fail("zlib stream ends early".into()),
                _ => {}
            }
        }
    }
}

/// One row to insert.
pub(crate) struct Row {
    id: Uuid,
    version: u64,
    topic: &'static str,
    state: Vec<u8>,
}

/// One row read from a stream: version, topic, state.
pub(crate) type Stored = (u64, String, Vec<u8>);

/// One notification: id, originator id, version, topic, state.
pub(crate) type Notif = (u64, String, u64, String, Vec<u8>);

/// What the raw workload needs of a database.
pub(crate) trait RawStore: Send + Sized {
    /// Inserts `rows` into the events table in one transaction.
    fn insert(&mut self, rows: &[Row]) -> Res<()>;
    /// The events of `id` after version `gt`, in version order.
    fn select_events(&mut self, id: &Uuid, gt: u64) -> Res<Vec<Stored>>;
    /// Up to `limit` notifications from `start` on.
    fn select_notifications(&mut self, start: u64, limit: usize) -> Res<Vec<Notif>>;
    /// Inserts one snapshot row.
    fn insert_snapshot(&mut self, row: &Row) -> Res<()>;
    /// The newest snapshot of `id`.
    fn newest_snapshot(&mut self, id: &Uuid) -> Res<Option<Stored>>;
    /// How many events are stored.
    fn count(&mut self) -> Res<u64>;
    /// Another connection to the same store.
    fn another(&self) -> Res<Self>;
}
