//! A small synthetic VHDX builder for tests: valid images in memory that a
//! test then mutates one field at a time.
//!
//! Layout (Windows-like): header section, log @1 MiB (1 MiB), metadata
//! @2 MiB (1 MiB), BAT @3 MiB (MiB-rounded), payload and sector bitmap
//! blocks appended at MiB boundaries.

use std::ops::Range;
use std::path::Path;

use refpoint_vhdx::format::{
    self, BAT_REGION_GUID, BatEntry, FILE_PARAMETERS_GUID, LOGICAL_SECTOR_SIZE_GUID,
    METADATA_REGION_GUID, MIB, PARENT_LOCATOR_GUID, PHYSICAL_SECTOR_SIZE_GUID,
    VIRTUAL_DISK_ID_GUID, VIRTUAL_DISK_SIZE_GUID, payload_state, sector_bitmap_state,
};
use refpoint_vhdx::header::Header;
use refpoint_vhdx::locator::locator_to_bytes;
use refpoint_vhdx::log::{LogWrite, encode_entry};
use refpoint_vhdx::region::{RegionEntry, table_to_bytes};
use uuid::Uuid;

pub const LOG_OFFSET: u64 = MIB;
pub const LOG_LENGTH: u64 = MIB;
pub const METADATA_OFFSET: u64 = 2 * MIB;
pub const BAT_OFFSET: u64 = 3 * MIB;

/// Metadata table entry index of each item, as written by the builder.
pub const MD_FILE_PARAMETERS: usize = 0;
pub const MD_VIRTUAL_DISK_SIZE: usize = 1;
pub const MD_VIRTUAL_DISK_ID: usize = 2;
pub const MD_LOGICAL_SECTOR_SIZE: usize = 3;
pub const MD_PHYSICAL_SECTOR_SIZE: usize = 4;
pub const MD_PARENT_LOCATOR: usize = 5;

/// File offset of metadata table entry `i`.
pub fn metadata_entry_offset(i: usize) -> u64 {
    METADATA_OFFSET + 32 + 32 * i as u64
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Spec {
    pub virtual_size: u64,
    pub block_size: u32,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
    pub leave_block_allocated: bool,
    pub data_write_guid: Uuid,
    pub virtual_disk_id: Uuid,
    /// Parent locator entries; `Some` makes a differencing file.
    pub locator: Option<Vec<(String, String)>>,
}

impl Spec {
    /// A dynamic (base) disk.
    pub fn dynamic(virtual_size: u64, block_size: u32) -> Spec {
        Spec {
            virtual_size,
            block_size,
            logical_sector_size: 512,
            physical_sector_size: 4096,
            leave_block_allocated: false,
            data_write_guid: Uuid::new_v4(),
            virtual_disk_id: Uuid::new_v4(),
            locator: None,
        }
    }

    /// A differencing disk whose locator names `parent_linkage` and a relative path.
    pub fn child(virtual_size: u64, block_size: u32, parent_linkage: Uuid, relative: &str) -> Spec {
        let mut s = Spec::dynamic(virtual_size, block_size);
        s.locator = Some(vec![
            ("parent_linkage".into(), format::guid_braced(parent_linkage)),
            ("relative_path".into(), relative.into()),
        ]);
        s
    }

    pub fn has_parent(&self) -> bool {
        self.locator.is_some()
    }

    pub fn chunk_ratio(&self) -> u64 {
        format::chunk_ratio(self.logical_sector_size, self.block_size)
    }

    pub fn data_blocks(&self) -> u64 {
        format::data_blocks_count(self.virtual_size, self.block_size)
    }

    pub fn bat_entries(&self) -> u64 {
        format::total_bat_entries(self.data_blocks(), self.chunk_ratio(), self.has_parent())
    }
}

/// A VHDX image in memory.
#[derive(Debug, Clone)]
pub struct Image {
    pub bytes: Vec<u8>,
    pub spec: Spec,
    pub bat_length: u64,
    /// The current header (slot 2, sequence 2); slot 1 holds sequence 1.
    pub header: Header,
}

impl Image {
    pub fn new(spec: Spec) -> Image {
        let bat_length = format::round_up_mib(spec.bat_entries() * 8)
            .unwrap()
            .max(MIB);
        let header = Header {
            sequence_number: 2,
            file_write_guid: Uuid::new_v4(),
            data_write_guid: spec.data_write_guid,
            log_guid: Uuid::nil(),
            log_version: 0,
            version: 1,
            log_length: u32::try_from(LOG_LENGTH).unwrap(),
            log_offset: LOG_OFFSET,
        };
        let mut img = Image {
            bytes: vec![0u8; usize::try_from(BAT_OFFSET + bat_length).unwrap()],
            spec,
            bat_length,
            header,
        };
        img.patch(0, b"vhdxfile");
        let creator: Vec<u8> = "refpoint-test"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        img.patch(8, &creator);
        img.write_headers();
        img.set_regions(&[
            RegionEntry {
                guid: BAT_REGION_GUID,
                file_offset: BAT_OFFSET,
                length: u32::try_from(bat_length).unwrap(),
                required: true,
            },
            RegionEntry {
                guid: METADATA_REGION_GUID,
                file_offset: METADATA_OFFSET,
                length: u32::try_from(MIB).unwrap(),
                required: true,
            },
        ]);
        img.write_metadata();
        img
    }

    /// Writes `header` as current (slot 2, seq n) and a copy with seq n-1 in slot 1.
    pub fn write_headers(&mut self) {
        let mut older = self.header.clone();
        older.sequence_number = self.header.sequence_number.saturating_sub(1);
        self.patch(format::HEADER1_OFFSET, &older.to_bytes());
        self.patch(format::HEADER2_OFFSET, &self.header.to_bytes());
    }

    /// Writes both region tables.
    pub fn set_regions(&mut self, entries: &[RegionEntry]) {
        let t = table_to_bytes(entries);
        self.patch(format::REGION_TABLE1_OFFSET, &t);
        self.patch(format::REGION_TABLE2_OFFSET, &t);
    }

    fn write_metadata(&mut self) {
        let s = self.spec.clone();
        let mut items: Vec<(Uuid, Vec<u8>, u32)> = vec![
            (
                FILE_PARAMETERS_GUID,
                [
                    s.block_size.to_le_bytes(),
                    (u32::from(s.leave_block_allocated) | (u32::from(s.has_parent()) << 1))
                        .to_le_bytes(),
                ]
                .concat(),
                4,
            ),
            (
                VIRTUAL_DISK_SIZE_GUID,
                s.virtual_size.to_le_bytes().to_vec(),
                6,
            ),
            (
                VIRTUAL_DISK_ID_GUID,
                s.virtual_disk_id.to_bytes_le().to_vec(),
                6,
            ),
            (
                LOGICAL_SECTOR_SIZE_GUID,
                s.logical_sector_size.to_le_bytes().to_vec(),
                6,
            ),
            (
                PHYSICAL_SECTOR_SIZE_GUID,
                s.physical_sector_size.to_le_bytes().to_vec(),
                6,
            ),
        ];
        if let Some(loc) = &s.locator {
            let pairs: Vec<(&str, &str)> =
                loc.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            items.push((PARENT_LOCATOR_GUID, locator_to_bytes(&pairs), 4));
        }
        let mut table = vec![0u8; 64 * 1024];
        table[0..8].copy_from_slice(b"metadata");
        table[10..12].copy_from_slice(&u16::try_from(items.len()).unwrap().to_le_bytes());
        let mut at: u32 = 0x10000;
        for (i, (guid, data, flags)) in items.iter().enumerate() {
            let e = 32 + 32 * i;
            table[e..e + 16].copy_from_slice(&guid.to_bytes_le());
            table[e + 16..e + 20].copy_from_slice(&at.to_le_bytes());
            table[e + 20..e + 24]
                .copy_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
            table[e + 24..e + 28].copy_from_slice(&flags.to_le_bytes());
            self.patch(METADATA_OFFSET + u64::from(at), data);
            at += u32::try_from(data.len()).unwrap();
        }
        self.patch(METADATA_OFFSET, &table);
    }

    /// Overwrites bytes at `offset`, growing the image if needed.
    pub fn patch(&mut self, offset: u64, data: &[u8]) {
        let at = usize::try_from(offset).unwrap();
        if self.bytes.len() < at + data.len() {
            self.bytes.resize(at + data.len(), 0);
        }
        self.bytes[at..at + data.len()].copy_from_slice(data);
    }

    pub fn read_u32(&self, offset: u64) -> u32 {
        let at = usize::try_from(offset).unwrap();
        u32::from_le_bytes(self.bytes[at..at + 4].try_into().unwrap())
    }

    pub fn read_u64(&self, offset: u64) -> u64 {
        let at = usize::try_from(offset).unwrap();
        u64::from_le_bytes(self.bytes[at..at + 8].try_into().unwrap())
    }

    /// Appends `mib` MiB of zeros at the (MiB-aligned) end; returns its offset.
    pub fn alloc(&mut self, mib: u64) -> u64 {
        let at = format::round_up_mib(self.bytes.len() as u64).unwrap();
        self.bytes
            .resize(usize::try_from(at + mib * MIB).unwrap(), 0);
        at
    }

    /// File offset of BAT entry `index`.
    pub fn bat_entry_offset(index: u64) -> u64 {
        BAT_OFFSET + index * 8
    }

    pub fn set_bat_entry(&mut self, index: u64, entry: BatEntry) {
        self.patch(Self::bat_entry_offset(index), &entry.0.to_le_bytes());
    }

    pub fn payload_index(&self, block: u64) -> u64 {
        format::payload_bat_index(block, self.spec.chunk_ratio())
    }

    pub fn bitmap_index(&self, chunk: u64) -> u64 {
        format::sector_bitmap_bat_index(chunk, self.spec.chunk_ratio())
    }

    /// Sets a payload block's state without data (NOT_PRESENT, ZERO, UNMAPPED, …).
    pub fn set_state(&mut self, block: u64, state: u8) {
        let i = self.payload_index(block);
        self.set_bat_entry(i, BatEntry::new(state, 0));
    }

    /// Stores a FULLY_PRESENT block whose bytes are `fill(offset_in_block)`.
    pub fn full_block(&mut self, block: u64, fill: impl Fn(u64) -> u8) -> u64 {
        let bs = u64::from(self.spec.block_size);
        let at = self.alloc(bs / MIB);
        for i in 0..bs {
            self.bytes[usize::try_from(at + i).unwrap()] = fill(i);
        }
        let i = self.payload_index(block);
        self.set_bat_entry(i, BatEntry::new(payload_state::FULLY_PRESENT, at));
        at
    }

    /// Stores a PARTIALLY_PRESENT block: bytes `fill(offset_in_block)`,
    /// with the sectors in `present` (sector indices within the block) marked
    /// present in the chunk's sector bitmap (allocated if needed).
    pub fn partial_block(&mut self, block: u64, fill: impl Fn(u64) -> u8, present: &[Range<u64>]) {
        let bs = u64::from(self.spec.block_size);
        let lss = u64::from(self.spec.logical_sector_size);
        let at = self.alloc(bs / MIB);
        for i in 0..bs {
            self.bytes[usize::try_from(at + i).unwrap()] = fill(i);
        }
        let i = self.payload_index(block);
        self.set_bat_entry(i, BatEntry::new(payload_state::PARTIALLY_PRESENT, at));
        let cr = self.spec.chunk_ratio();
        let chunk = block / cr;
        let sb_index = self.bitmap_index(chunk);
        let sb_entry = BatEntry(self.read_u64(Self::bat_entry_offset(sb_index)));
        let sb = if sb_entry.state() == sector_bitmap_state::PRESENT {
            sb_entry.file_offset()
        } else {
            let sb = self.alloc(1);
            self.set_bat_entry(sb_index, BatEntry::new(sector_bitmap_state::PRESENT, sb));
            sb
        };
        let first_sector = (block % cr) * (bs / lss);
        for r in present {
            for s in r.clone() {
                let bit = first_sector + s;
                let byte = usize::try_from(sb + bit / 8).unwrap();
                self.bytes[byte] |= 1 << (bit % 8);
            }
        }
    }

    /// Writes log entries (`(log offset, encoded entry)`) and makes the log
    /// dirty with `log_guid`.
    pub fn set_log(&mut self, log_guid: Uuid, entries: &[(u64, Vec<u8>)]) {
        for (at, bytes) in entries {
            for (i, b) in bytes.iter().enumerate() {
                let pos = (at + i as u64) % LOG_LENGTH;
                self.bytes[usize::try_from(LOG_OFFSET + pos).unwrap()] = *b;
            }
        }
        self.header.log_guid = log_guid;
        self.write_headers();
    }

    /// A one-entry dirty log (tail = itself) applying `writes`, with the
    /// current image size as FlushedFileOffset and LastFileOffset.
    pub fn dirty_log(&mut self, writes: &[LogWrite]) -> Uuid {
        let guid = Uuid::new_v4();
        let size = format::round_up_mib(self.bytes.len() as u64).unwrap();
        let entry = encode_entry(guid, 1, 0, size, size, writes);
        self.set_log(guid, &[(0, entry)]);
        guid
    }

    /// Writes the image as a sparse file (all-zero 64 KiB pieces become holes).
    pub fn write_to(&self, path: &Path) {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::create(path).expect("create image");
        file.set_len(self.bytes.len() as u64).expect("set_len");
        for (i, piece) in self.bytes.chunks(64 * 1024).enumerate() {
            if piece.iter().any(|&b| b != 0) {
                file.write_all_at(piece, i as u64 * 64 * 1024)
                    .expect("write image");
            }
        }
    }
}
