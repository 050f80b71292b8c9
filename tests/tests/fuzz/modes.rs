//! The codec modes, and the mapper of each with what the fuzzer needs to
//! seal mutated JSON as the mapper would.

use std::io::Write as _;

use annals::cipher::Cipher;
use annals::mapper::{associated_data, Compressor, Mapper};
use annals::persistence::StoredEvent;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Mode {
    pub(crate) name: &'static str,
    pub(crate) zlib: bool,
    aes: bool,
    bound: bool,
    pub(crate) chain: bool,
}

pub(crate) const MODES: &[Mode] = &[
    Mode::new("plain", false, false, true, false),
    Mode::new("plain+chain", false, false, true, true),
    Mode::new("zlib", true, false, true, false),
    Mode::new("zlib+chain", true, false, true, true),
    Mode::new("aes", false, true, true, false),
    Mode::new("aes+chain", false, true, true, true),
    Mode::new("aes-unbound", false, true, false, false),
    Mode::new("aes-unbound+chain", false, true, false, true),
    Mode::new("zlib+aes", true, true, true, false),
    Mode::new("zlib+aes+chain", true, true, true, true),
    Mode::new("zlib+aes-unbound", true, true, false, false),
    Mode::new("zlib+aes-unbound+chain", true, true, false, true),
];

impl Mode {
    const fn new(name: &'static str, zlib: bool, aes: bool, bound: bool, chain: bool) -> Self {
        Self {
            name,
            zlib,
            aes,
            bound,
            chain,
        }
    }
}

/// A mode's mapper, and what the fuzzer needs to seal mutated JSON the way
/// the mapper would (so the layers under the cipher and the compressor see
/// the mutations too).
pub(crate) struct Codec {
    pub(crate) mode: Mode,
    pub(crate) mapper: Mapper,
    cipher: Option<Cipher>,
}

impl Codec {
    pub(crate) fn new(mode: Mode, rng: &mut fastrand::Rng) -> Self {
        let cipher = mode.aes.then(|| {
            let len = [16, 24, 32][rng.usize(..3)];
            let key: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            Cipher::new(&key).expect("a key of 16, 24 or 32 bytes")
        });
        let mapper = Mapper::new()
            .with_compressor(mode.zlib.then_some(Compressor::Zlib))
            .with_cipher(cipher.clone())
            .with_associated_data(mode.bound)
            .with_hash_chain(mode.chain);
        Self {
            mode,
            mapper,
            cipher,
        }
    }

    pub(crate) fn compress(&self, json: &[u8]) -> Vec<u8> {
        if !self.mode.zlib {
            return json.to_vec();
        }
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(json).expect("in memory");
        encoder.finish().expect("in memory")
    }

    pub(crate) fn encrypt(&self, data: &[u8], row: &StoredEvent) -> Vec<u8> {
        match &self.cipher {
            None => data.to_vec(),
            Some(c) if !self.mode.bound => c.encrypt(data).expect("encrypts"),
            Some(c) => c
                .encrypt_bound(
                    data,
                    &associated_data(&row.originator_id, row.originator_version, &row.topic),
                )
                .expect("encrypts"),
        }
    }

    pub(crate) fn decrypt(&self, row: &StoredEvent) -> Vec<u8> {
        match &self.cipher {
            None => row.state.clone(),
            Some(c) if !self.mode.bound => c.decrypt(&row.state).expect("decrypts"),
            Some(c) => c
                .decrypt_bound(
                    &row.state,
                    &associated_data(&row.originator_id, row.originator_version, &row.topic),
                )
                .expect("decrypts"),
        }
    }

    pub(crate) fn decompress(&self, data: &[u8]) -> Vec<u8> {
        if !self.mode.zlib {
            return data.to_vec();
        }
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(data), &mut out)
            .expect("inflates");
        out
    }
}
