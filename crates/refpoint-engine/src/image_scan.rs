//! One sequential read of an exported VHDX: the whole file's SHA-256 (what
//! `SHA256SUMS` lists) and the digest of every block the file holds itself,
//! both computed from the same buffers. `verify` reads each output once.
//!
//! The BAT (MS-VHDX §2.5) says where each FULLY_PRESENT block's payload
//! lies; the file is read front to back in [`SCAN_CHUNK`]-byte pieces, and
//! the bytes of each payload block feed its block digest as they pass.
//! Payload blocks never overlap (the reader refuses such files), so at most
//! one block is being hashed at a time. ZERO (and UNMAPPED, UNDEFINED)
//! blocks read as zeros and get the zero digest; NOT_PRESENT blocks are the
//! caller's (zero in a dynamic file, the parent's in a differencing one).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use refpoint_vhdx::{PayloadState, VhdxFile};
use sha2::{Digest, Sha256};

use crate::digest::{Sha256Digest, ZeroDigests};

/// Bytes read per call.
pub(crate) const SCAN_CHUNK: usize = 8 * 1024 * 1024;

/// What one read of an exported VHDX found.
#[derive(Debug)]
pub(crate) struct ImageScan {
    /// The opened file (headers, metadata, BAT) for geometry checks.
    pub(crate) file: VhdxFile,
    /// SHA-256 of the whole file.
    pub(crate) sha256: Sha256Digest,
    /// File length, bytes.
    pub(crate) len: u64,
    /// `(block, digest)` of every block the file decides on its own
    /// (FULLY_PRESENT from its payload; ZERO and alike as zeros), ascending.
    pub(crate) own: Vec<(u64, Sha256Digest)>,
    /// The file's virtual size and block size, bytes.
    virtual_size: u64,
    block_size: u64,
    zeros: ZeroDigests,
}

impl ImageScan {
    /// The digest of every block of a file without parent: its own, or
    /// the zero digest for a NOT_PRESENT block.
    pub(crate) fn all_blocks(&self) -> impl Iterator<Item = Sha256Digest> + '_ {
        let (size, bs) = (self.virtual_size, self.block_size);
        let mut own = self.own.iter().peekable();
        (0..size.div_ceil(bs.max(1))).map(move |b| match own.next_if(|(i, _)| *i == b) {
            Some((_, d)) => *d,
            None => self.zeros.for_len(size.saturating_sub(b * bs).min(bs)),
        })
    }
}

/// Scans the VHDX at `path` (module docs).
///
/// # Errors
/// A message naming the file, block and offset: the file does not open as
/// a VHDX, holds a PARTIALLY_PRESENT block (refpoint never writes one), a
/// payload block runs past the end of the file, or a read fails.
pub(crate) fn scan_image(path: &Path) -> Result<ImageScan, String> {
    let vhdx = VhdxFile::open(path).map_err(|e| e.to_string())?;
    let g = *vhdx.geometry();
    let bs = u64::from(g.block_size);
    let zeros = ZeroDigests::new(g.virtual_size, bs);
    let count = g.virtual_size.div_ceil(bs.max(1));
    let block_len = |b: u64| g.virtual_size.saturating_sub(b * bs).min(bs);
    let mut own = Vec::new();
    let mut present: Vec<(u64, u64)> = Vec::new();
    for block in 0..count {
        let (state, offset) = vhdx
            .payload_state(block)
            .map_err(|e| format!("block {block}: {e}"))?;
        match (state, offset) {
            (PayloadState::FullyPresent, Some(offset)) => present.push((offset, block)),
            (PayloadState::NotPresent, _) => {}
            (PayloadState::PartiallyPresent, _) => {
                return Err(format!(
                    "block {block} is PARTIALLY_PRESENT; a refpoint export holds only FULLY_PRESENT, ZERO and NOT_PRESENT blocks"
                ));
            }
            _ => own.push((block, zeros.for_len(block_len(block)))),
        }
    }
    present.sort_unstable();

    let io = |e: io::Error| format!("cannot read '{}': {e}", path.display());
    let mut file = File::open(path).map_err(io)?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(SCAN_CHUNK)
        .map_err(|_| format!("cannot allocate a {SCAN_CHUNK}-byte buffer"))?;
    buf.resize(SCAN_CHUNK, 0);
    let mut whole = Sha256::new();
    let mut pos = 0u64;
    let mut next = 0usize;
    let mut current: Option<Sha256> = None;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        whole.update(chunk);
        let end = pos + n as u64;
        let mut at = pos;
        while let Some(&(start, block)) = present.get(next) {
            let stop = start + block_len(block);
            if at < start {
                if start >= end {
                    break;
                }
                at = start;
            }
            let take_end = stop.min(end);
            let from = usize::try_from(at - pos).unwrap_or(usize::MAX);
            let to = usize::try_from(take_end - pos).unwrap_or(usize::MAX);
            current
                .get_or_insert_with(Sha256::new)
                .update(chunk.get(from..to).unwrap_or_default());
            at = take_end;
            if at < stop {
                break;
            }
            let digest = current
                .take()
                .map(|h| h.finalize().into())
                .unwrap_or_default();
            own.push((block, digest));
            next += 1;
        }
        pos = end;
    }
    if let Some(&(start, block)) = present.get(next) {
        return Err(format!(
            "block {block}: its payload at file offset {start} runs past the end of the {pos}-byte file"
        ));
    }
    own.sort_unstable_by_key(|(b, _)| *b);
    Ok(ImageScan {
        file: vhdx,
        sha256: whole.finalize().into(),
        len: pos,
        own,
        virtual_size: g.virtual_size,
        block_size: bs,
        zeros,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256;
    use refpoint_vhdx::{BuilderKind, CreateOptions, SequentialImage};

    const MIB: u64 = 1 << 20;

    fn write(path: &Path, size: u64, blocks: &[(u64, u8)]) {
        let opts = CreateOptions {
            block_size: 1 << 20,
            ..CreateOptions::new(size)
        };
        let planned = blocks.iter().map(|(b, _)| *b).collect();
        let mut img =
            SequentialImage::create(path, path, &opts, BuilderKind::Dynamic, planned).unwrap();
        for (b, fill) in blocks {
            let len = size.saturating_sub(b * MIB).min(MIB);
            img.write_payload(*b, 0, &vec![*fill; usize::try_from(len).unwrap()])
                .unwrap();
        }
        img.finish().unwrap();
    }

    #[test]
    fn scan_gives_the_file_hash_and_each_present_block_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.vhdx");
        write(&path, 3 * MIB + 512, &[(1, 7), (3, 9)]);

        let scan = scan_image(&path).unwrap();

        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(scan.sha256, sha256(&bytes));
        assert_eq!(scan.len, bytes.len() as u64);
        assert_eq!(
            scan.own,
            vec![(1, sha256(&vec![7u8; 1 << 20])), (3, sha256(&[9u8; 512]))]
        );
        let all: Vec<_> = scan.all_blocks().collect();
        assert_eq!(all[0], sha256(&vec![0u8; 1 << 20]));
    }

    #[test]
    fn truncated_payload_is_named_by_block_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.vhdx");
        write(&path, 4 * MIB, &[(2, 7)]);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 4096)
            .unwrap();

        let err = scan_image(&path).unwrap_err();

        assert!(
            err.contains("block 2") && err.contains("end of file"),
            "{err}"
        );
    }
}
