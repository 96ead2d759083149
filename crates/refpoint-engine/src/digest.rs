//! SHA-256 digests of an export.
//!
//! - **Block digest**: SHA-256 of one block of the virtual disk (the output
//!   block size; the last block may be short). Every block has one, zero
//!   blocks included.
//! - **Zero digest**: the block digest of an all-zero block, computed once per
//!   block length without reading anything ([`ZeroDigests`]).
//! - **Content digest**: SHA-256 over the concatenated 32-byte binary block
//!   digests in block order, as Proxmox's `index_csum`
//!   (`pbs-datastore/src/fixed_index.rs`); it identifies the whole virtual
//!   disk at the reference point.
//! - **File digest**: plain SHA-256 of a whole file, as `sha256sum` prints it.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// A binary SHA-256 digest.
pub type Sha256Digest = [u8; 32];

/// SHA-256 of `data`.
#[must_use]
pub fn sha256(data: &[u8]) -> Sha256Digest {
    Sha256::digest(data).into()
}

/// SHA-256 of `len` zero bytes, fed from a small static buffer.
#[must_use]
pub fn zero_digest(len: u64) -> Sha256Digest {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let mut hasher = Sha256::new();
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left).map_or(ZEROS.len(), |l| l.min(ZEROS.len()));
        hasher.update(ZEROS.get(..n).unwrap_or(&ZEROS));
        left -= n as u64;
    }
    hasher.finalize().into()
}

/// The two zero digests of a disk: full blocks and the (possibly short) last block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroDigests {
    full_len: u64,
    full: Sha256Digest,
    last_len: u64,
    last: Sha256Digest,
}

impl ZeroDigests {
    /// Zero digests for a disk of `virtual_size` bytes cut in `block_size`-byte blocks.
    #[must_use]
    pub fn new(virtual_size: u64, block_size: u64) -> ZeroDigests {
        let full = zero_digest(block_size);
        let rem = if block_size == 0 {
            0
        } else {
            virtual_size % block_size
        };
        let (last_len, last) = if rem == 0 {
            (block_size, full)
        } else {
            (rem, zero_digest(rem))
        };
        ZeroDigests {
            full_len: block_size,
            full,
            last_len,
            last,
        }
    }

    /// The digest of `len` zero bytes when `len` is one of this disk's block
    /// lengths, else computed on the spot.
    #[must_use]
    pub fn for_len(&self, len: u64) -> Sha256Digest {
        if len == self.full_len {
            self.full
        } else if len == self.last_len {
            self.last
        } else {
            zero_digest(len)
        }
    }
}

/// The content digest: SHA-256 over the concatenated binary block digests.
#[must_use]
pub fn content_digest<'a>(blocks: impl IntoIterator<Item = &'a Sha256Digest>) -> Sha256Digest {
    let mut hasher = Sha256::new();
    for d in blocks {
        hasher.update(d);
    }
    hasher.finalize().into()
}

/// True when every byte of `data` is zero (the output writer's check).
pub use refpoint_vhdx::stream::is_zero;

/// Lower-case hex, as `sha256sum` prints it.
#[must_use]
pub fn to_hex(digest: &Sha256Digest) -> String {
    hex::encode(digest)
}

/// Parses 64 hex digits (either case) into a digest.
#[must_use]
pub fn from_hex(text: &str) -> Option<Sha256Digest> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// SHA-256 and length of a whole file, read sequentially through `buf`;
/// `between_chunks` runs after every chunk (cancellation checks).
///
/// # Errors
/// The I/O error of opening or reading the file, or the error of `between_chunks`.
pub(crate) fn file_digest<E: From<io::Error>>(
    path: &Path,
    buf: &mut [u8],
    mut between_chunks: impl FnMut() -> Result<(), E>,
) -> Result<(Sha256Digest, u64), E> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        hasher.update(buf.get(..n).unwrap_or_default());
        total += n as u64;
        between_chunks()?;
    }
    Ok((hasher.finalize().into(), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_digest_equals_digest_of_zero_buffer() {
        let len = 200 * 1024 + 3;

        let streamed = zero_digest(len);

        assert_eq!(streamed, sha256(&vec![0u8; 200 * 1024 + 3]));
    }

    #[test]
    fn sha256_of_abc_matches_fips_180_vector() {
        assert_eq!(
            to_hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn zero_digests_short_last_block_uses_remainder_length() {
        let z = ZeroDigests::new(3 * 4096 + 512, 4096);

        assert_eq!(z.for_len(512), sha256(&[0u8; 512]));
        assert_eq!(z.for_len(4096), sha256(&[0u8; 4096]));
    }

    #[test]
    fn content_digest_hashes_concatenated_binary_digests() {
        let a = sha256(b"a");
        let b = sha256(b"b");

        let digest = content_digest([&a, &b]);

        let mut concat = a.to_vec();
        concat.extend_from_slice(&b);
        assert_eq!(digest, sha256(&concat));
    }

    #[test]
    fn is_zero_finds_a_single_set_byte_in_the_tail() {
        let mut data = vec![0u8; 1000 + 7];
        assert!(is_zero(&data));
        data[1005] = 1;

        assert!(!is_zero(&data));
    }

    #[test]
    fn from_hex_round_trips_and_rejects_short_text() {
        let d = sha256(b"x");

        assert_eq!(from_hex(&to_hex(&d)), Some(d));
        assert_eq!(from_hex("abcd"), None);
    }
}
