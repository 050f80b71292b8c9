//! zlib for stored states: a compressor and decompressor per thread, reset
//! per record, and a bound on what a record may inflate to.

use std::cell::RefCell;
use std::io::Write;

use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};

use super::MAX_STATE;
use crate::env::Env;
use crate::error::{Error, Result};

/// The setting that turns compression on.
// A copy of the setting's name, kept (hidden) for code written against it:
// the one documented name is `settings::COMPRESSOR_TOPIC`.
#[doc(hidden)]
pub const COMPRESSOR_TOPIC: &str = crate::settings::COMPRESSOR_TOPIC.name;

/// How stored state is compressed: `builder.compressor(Some(Compressor::Zlib))`
/// or `COMPRESSOR_TOPIC=zlib`.
///
/// ```
/// use annals::env::Env;
/// use annals::mapper::Compressor;
///
/// let env = Env::from_map("Kennel", [("COMPRESSOR_TOPIC", "zlib")]);
/// assert_eq!(Compressor::from_env(&env)?, Some(Compressor::Zlib));
/// let app = annals::Application::builder("Kennel").compressor(Some(Compressor::Zlib)).build()?;
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compressor {
    /// zlib (deflate with a zlib header), as Python's `zlib.compress`.
    Zlib,
}

impl Compressor {
    /// The compressor that `COMPRESSOR_TOPIC` names: `zlib`, or the Python
    /// library's `eventsourcing.compressor:ZlibCompressor`; `None` when it
    /// is not set.
    ///
    /// # Errors
    ///
    /// [`Error::Config`], naming the variable, for any other value.
    pub fn from_env(env: &Env) -> Result<Option<Self>> {
        let Some((var, topic)) = env.get(COMPRESSOR_TOPIC) else {
            return Ok(None);
        };
        match topic.trim() {
            "zlib" | "eventsourcing.compressor:ZlibCompressor" => Ok(Some(Compressor::Zlib)),
            other => Err(Error::config(
                var,
                format!("unknown compressor {other:?}; expected \"zlib\""),
            )),
        }
    }

    pub(super) fn compress(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        // A deflate state is large (hundreds of KiB) and slow to set up:
        // each thread keeps one and resets it, instead of making one per
        // record (measured: about 10 µs per event before, see
        // docs/benchmarks.md).
        thread_local! {
            static ZLIB: RefCell<Compress> =
                RefCell::new(Compress::new(flate2::Compression::default(), true));
        }
        ZLIB.with(|z| {
            let mut z = z.borrow_mut();
            z.reset();
            let mut out = Vec::with_capacity(data.len() / 2 + 64);
            loop {
                let consumed = usize::try_from(z.total_in()).unwrap_or(usize::MAX);
                let input = data.get(consumed..).unwrap_or_default();
                match z.compress_vec(input, &mut out, FlushCompress::Finish) {
                    Ok(Status::StreamEnd) => return Ok(out),
                    // Out of room: grow and go on.
                    Ok(_) => out.reserve(out.capacity().max(64)),
                    // Compressing in memory has no failure mode but a
                    // bug; fall back to a fresh encoder.
                    Err(_) => return fresh_compress(data),
                }
            }
        })
    }

    /// Whether `data` begins as this compressor's stream does (zlib, RFC
    /// 1950: deflate, a window of at most 32 KiB, and the check bits): a
    /// state that does not was written otherwise (encrypted, say).
    pub(super) fn begins_stream(data: &[u8]) -> bool {
        match data {
            [cmf, flg, ..] => {
                cmf & 0x0f == 8
                    && cmf >> 4 <= 7
                    && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
            }
            _ => false,
        }
    }

    /// At most [`MAX_STATE`] bytes: a record that inflates beyond it is an
    /// error (a corrupt or hostile record), not an allocation that takes
    /// the process down.
    pub(super) fn decompress(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        thread_local! {
            static UNZLIB: RefCell<Decompress> = RefCell::new(Decompress::new(true));
        }
        UNZLIB.with(|z| {
            let mut z = z.borrow_mut();
            z.reset(true);
            let mut out = Vec::with_capacity(data.len() * 4 + 64);
            loop {
                let consumed = usize::try_from(z.total_in()).unwrap_or(usize::MAX);
                let input = data.get(consumed..).unwrap_or_default();
                let before = (z.total_in(), z.total_out());
                let status = z
                    .decompress_vec(input, &mut out, FlushDecompress::None)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                match status {
                    Status::StreamEnd => return Ok(out),
                    _ if out.len() >= MAX_STATE => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("it inflates beyond {MAX_STATE} bytes"),
                        ))
                    }
                    _ if out.len() == out.capacity() => {
                        out.reserve(out.capacity().min(MAX_STATE - out.len()).max(64))
                    }
                    _ if (z.total_in(), z.total_out()) == before => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the zlib stream ends early",
                        ))
                    }
                    _ => {}
                }
            }
        })
    }
}

fn fresh_compress(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data)?;
    encoder.finish()
}
