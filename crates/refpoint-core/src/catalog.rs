//! The host catalog `refpoint-host.json`: every virtual system, snapshot and
//! reference point of a host, as JSON, replaced atomically on each change.
//!
//! Loading is strict: the JSON must parse into the model (unknown fields are
//! refused), the format version must be known, and the cross-object rules
//! below must hold. A catalog that breaks any of them is reported as
//! [`HostError::CatalogCorrupt`] naming the file and the rule (for JSON
//! errors, serde's line and column); it is never silently reset.
//!
//! Shape: `{ "FormatVersion": 1, "HostGuid": "<GUID>", "VirtualSystems": [...],
//! "Snapshots": [...], "ReferencePoints": [...], "Collections": [...],
//! "ReferencePointCollections": [...], "SnapshotCollections": [...] }`.
//! `Collections` holds the `Msvm_VirtualSystemCollection` records (catalogs
//! written before collections existed have it empty and load unchanged);
//! the two other collection lists are left out while empty and default to
//! empty (see [`crate::collection`], [`crate::collection_point`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::atomic::write_atomically;
use crate::collection::VirtualSystemCollection;
use crate::collection_point::{ReferencePointCollection, SnapshotCollection};
use crate::error::{HostError, ObjectKind, Result};
use crate::frozen::FrozenDisk;
use crate::ids;
use crate::model::{VirtualSystem, check_vm_element_name, guid_upper};
use crate::reference_point::ReferencePoint;
use crate::snapshot::Snapshot;

/// File name of the catalog inside the host directory.
pub const CATALOG_FILE_NAME: &str = "refpoint-host.json";
/// The catalog format this build reads and writes.
pub const CATALOG_FORMAT_VERSION: u32 = 1;

/// Why a catalog cannot be trusted: one variant per rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// Not JSON, or JSON that does not fit the model (missing or unknown
    /// field, wrong type, empty chain, relative layer path, bad GUID or time).
    #[error("line {line}, column {column}: {message}")]
    Parse {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// serde_json's message.
        message: String,
    },
    /// `FormatVersion` is not one this build understands.
    #[error("FormatVersion {found} is not supported (this build reads {supported})")]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A GUID-derived identifier (InstanceID, VirtualSystemIdentifier) does
    /// not agree with the GUIDs it is made from.
    #[error("{field} of {object} is {found:?}, expected {expected:?}")]
    IdentifierMismatch {
        /// The object (its GUID or InstanceID).
        object: String,
        /// The CIM field.
        field: &'static str,
        /// Value in the file.
        found: String,
        /// Value derived from the GUIDs.
        expected: String,
    },
    /// Two objects of one kind share an identifier.
    #[error("duplicate {what} identifier {id}")]
    DuplicateIdentifier {
        /// Kind of object.
        what: ObjectKind,
        /// The shared identifier.
        id: String,
    },
    /// Two virtual systems share an `ElementName` (compared case-insensitively:
    /// it names their export folder).
    #[error("two virtual systems are named {name:?}")]
    DuplicateElementName {
        /// The shared name.
        name: String,
    },
    /// A virtual system's `ElementName` cannot be a folder name.
    #[error("virtual system name {name:?} {reason}")]
    InvalidElementName {
        /// The name.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A snapshot or reference point names a virtual system that is not in
    /// the catalog.
    #[error("{what} {id} belongs to unknown virtual system {vm}")]
    UnknownVirtualSystem {
        /// Snapshot or reference point.
        what: ObjectKind,
        /// Its InstanceID.
        id: String,
        /// The missing VM GUID.
        vm: String,
    },
    /// An active (writable) leaf is also a layer of another chain, where it
    /// must be read-only.
    #[error("active leaf {} of {owner} is also a layer of {other}", .path.display())]
    ActiveLeafShared {
        /// The leaf.
        path: PathBuf,
        /// The disk whose active leaf it is.
        owner: String,
        /// The other chain (disk, snapshot or reference point).
        other: String,
    },
    /// A disk's change-tracking state contradicts its chain or its epoch
    /// counter (an epoch layer that is not in the chain, epochs out of
    /// order, an epoch beyond the counter).
    #[error("change tracking of disk {disk}: {reason}")]
    TrackingInconsistent {
        /// The disk's InstanceID.
        disk: String,
        /// Which rule is broken.
        reason: String,
    },
    /// Two virtual system collections share an `ElementName` (compared
    /// case-insensitively: the CLI names collections by it).
    #[error("two collections are named {name:?}")]
    DuplicateCollectionName {
        /// The shared name.
        name: String,
    },
    /// A collection's member is missing or listed twice, or a reference
    /// point or snapshot collection names a collection that does not exist.
    #[error("member {member} of collection {collection}: {reason}")]
    CollectionMember {
        /// The collection's `CollectionID`.
        collection: String,
        /// The member (VM GUID, InstanceID or CollectionID).
        member: String,
        /// Which rule is broken.
        reason: String,
    },
    /// A snapshot or reference point carries a tracking epoch its disk has
    /// not reached yet (epochs only grow).
    #[error("{id} records tracking epoch {epoch} of disk {disk}, whose counter is only {current}")]
    EpochAhead {
        /// Snapshot or reference point InstanceID.
        id: String,
        /// The disk's InstanceID.
        disk: String,
        /// The recorded epoch.
        epoch: u64,
        /// The disk's counter.
        current: u64,
    },
}

/// The whole host model as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct Catalog {
    pub(crate) format_version: u32,
    #[serde(with = "guid_upper")]
    pub(crate) host_guid: Uuid,
    pub(crate) virtual_systems: Vec<VirtualSystem>,
    pub(crate) snapshots: Vec<Snapshot>,
    pub(crate) reference_points: Vec<ReferencePoint>,
    pub(crate) collections: Vec<VirtualSystemCollection>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) reference_point_collections: Vec<ReferencePointCollection>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) snapshot_collections: Vec<SnapshotCollection>,
}

#[derive(Deserialize)]
struct VersionProbe {
    #[serde(rename = "FormatVersion")]
    format_version: u32,
}

fn parse_error(e: &serde_json::Error) -> CatalogError {
    CatalogError::Parse {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    }
}

impl Catalog {
    /// An empty catalog for a new host.
    pub(crate) fn new() -> Catalog {
        Catalog {
            format_version: CATALOG_FORMAT_VERSION,
            host_guid: Uuid::new_v4(),
            virtual_systems: Vec::new(),
            snapshots: Vec::new(),
            reference_points: Vec::new(),
            collections: Vec::new(),
            reference_point_collections: Vec::new(),
            snapshot_collections: Vec::new(),
        }
    }

    /// Reads, parses and validates the catalog at `path`.
    ///
    /// # Errors
    /// [`HostError::Io`] if it cannot be read; [`HostError::CatalogCorrupt`]
    /// with a [`CatalogError`] otherwise.
    pub(crate) fn load(path: &Path) -> Result<Catalog> {
        let text =
            std::fs::read_to_string(path).map_err(|e| HostError::io(path, "read catalog", e))?;
        Catalog::parse(&text).map_err(|detail| HostError::CatalogCorrupt {
            path: path.to_owned(),
            detail,
        })
    }

    /// Parses and validates catalog text.
    pub(crate) fn parse(text: &str) -> std::result::Result<Catalog, CatalogError> {
        let probe: VersionProbe = serde_json::from_str(text).map_err(|e| parse_error(&e))?;
        if probe.format_version != CATALOG_FORMAT_VERSION {
            return Err(CatalogError::UnsupportedVersion {
                found: probe.format_version,
                supported: CATALOG_FORMAT_VERSION,
            });
        }
        let catalog: Catalog = serde_json::from_str(text).map_err(|e| parse_error(&e))?;
        catalog.validate()?;
        Ok(catalog)
    }

    /// Writes the catalog to `path` atomically (temp file, fsync, rename,
    /// fsync of the directory).
    ///
    /// # Errors
    /// [`HostError::Io`].
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(self)
            .map_err(|e| HostError::io(path, "serialise catalog", std::io::Error::other(e)))?;
        text.push(b'\n');
        write_atomically(path, &text)
    }

    /// Checks the cross-object rules (see [`CatalogError`]).
    pub(crate) fn validate(&self) -> std::result::Result<(), CatalogError> {
        self.validate_virtual_systems()?;
        self.validate_snapshots()?;
        self.validate_reference_points()?;
        self.validate_epochs()?;
        self.validate_tracking()?;
        self.validate_active_leaves()?;
        crate::collection::validate_collections(self)
    }

    fn validate_tracking(&self) -> std::result::Result<(), CatalogError> {
        for disk in self.virtual_systems.iter().flat_map(|vm| vm.disks.iter()) {
            let bad = |reason: String| CatalogError::TrackingInconsistent {
                disk: disk.instance_id.clone(),
                reason,
            };
            let positions: Vec<usize> = disk
                .tracking
                .epoch_layers
                .iter()
                .map(|l| {
                    disk.chain
                        .layers()
                        .position(|c| c.path == l.path)
                        .ok_or_else(|| {
                            bad(format!(
                                "epoch layer {} is not in the chain",
                                l.path.display()
                            ))
                        })
                })
                .collect::<std::result::Result<_, _>>()?;
            if positions.windows(2).any(|w| matches!(w, [a, b] if a >= b)) {
                return Err(bad("epoch layers are not in chain order".to_owned()));
            }
            let mut below = u64::MAX;
            for l in &disk.tracking.epoch_layers {
                if l.first_epoch == 0 || l.first_epoch > l.last_epoch || l.last_epoch >= below {
                    return Err(bad(format!(
                        "{} holds epochs {}..={}, out of order",
                        l.path.display(),
                        l.first_epoch,
                        l.last_epoch
                    )));
                }
                if l.last_epoch > disk.rct_epoch {
                    return Err(bad(format!(
                        "{} holds epoch {} beyond the counter {}",
                        l.path.display(),
                        l.last_epoch,
                        disk.rct_epoch
                    )));
                }
                below = l.first_epoch;
            }
            if let Some(e) = disk
                .tracking
                .journal
                .iter()
                .find(|e| e.epoch == 0 || e.epoch > disk.rct_epoch)
            {
                return Err(bad(format!(
                    "journal record of epoch {} is outside 1..={}",
                    e.epoch, disk.rct_epoch
                )));
            }
        }
        Ok(())
    }

    /// Catalogs written before the change-tracking state existed: the top
    /// `RctEpoch` layers of each disk's chain are its epoch layers (each
    /// snapshot added exactly one, and nothing was merged then).
    pub(crate) fn migrate_tracking(&mut self) {
        for disk in self
            .virtual_systems
            .iter_mut()
            .flat_map(|vm| vm.disks.iter_mut())
        {
            let t = &disk.tracking;
            if disk.rct_epoch == 0 || !t.epoch_layers.is_empty() || !t.journal.is_empty() {
                continue;
            }
            let paths = disk.chain.paths();
            let count = usize::try_from(disk.rct_epoch)
                .unwrap_or(usize::MAX)
                .min(paths.len().saturating_sub(1));
            disk.tracking.epoch_layers = (0u64..)
                .zip(paths.into_iter().take(count))
                .map(|(i, path)| crate::tracking::EpochLayer {
                    path,
                    first_epoch: disk.rct_epoch - i,
                    last_epoch: disk.rct_epoch - i,
                })
                .collect();
        }
    }

    fn validate_virtual_systems(&self) -> std::result::Result<(), CatalogError> {
        let mut names = HashSet::new();
        let mut element_names = HashSet::new();
        let mut disks = HashSet::new();
        for vm in &self.virtual_systems {
            let object = ids::cim_guid(&vm.name);
            if !names.insert(vm.name) {
                return Err(CatalogError::DuplicateIdentifier {
                    what: ObjectKind::VirtualSystem,
                    id: object,
                });
            }
            check_vm_element_name(&vm.element_name).map_err(|reason| {
                CatalogError::InvalidElementName {
                    name: vm.element_name.clone(),
                    reason,
                }
            })?;
            if !element_names.insert(vm.element_name.to_lowercase()) {
                return Err(CatalogError::DuplicateElementName {
                    name: vm.element_name.clone(),
                });
            }
            expect_equal(
                &object,
                "Settings.InstanceID",
                &vm.settings.instance_id,
                &ids::settings_instance_id(&vm.name),
            )?;
            expect_equal(
                &object,
                "Settings.VirtualSystemIdentifier",
                &ids::cim_guid(&vm.settings.virtual_system_identifier),
                &object,
            )?;
            if vm.settings.element_name != vm.element_name {
                return Err(CatalogError::IdentifierMismatch {
                    object,
                    field: "Settings.ElementName",
                    found: vm.settings.element_name.clone(),
                    expected: vm.element_name.clone(),
                });
            }
            for disk in &vm.disks {
                if !disks.insert(disk.disk_guid) {
                    return Err(CatalogError::DuplicateIdentifier {
                        what: ObjectKind::VirtualDisk,
                        id: ids::cim_guid(&disk.disk_guid),
                    });
                }
                let expected = ids::disk_instance_id(&vm.name, &disk.disk_guid, disk.address);
                expect_equal(&object, "Disks[].InstanceID", &disk.instance_id, &expected)?;
            }
        }
        Ok(())
    }

    fn validate_snapshots(&self) -> std::result::Result<(), CatalogError> {
        let mut seen = HashSet::new();
        for s in &self.snapshots {
            let id = ids::settings_instance_id(&s.guid);
            if !seen.insert(s.guid) {
                return Err(CatalogError::DuplicateIdentifier {
                    what: ObjectKind::Snapshot,
                    id,
                });
            }
            expect_equal(&id, "Settings.InstanceID", &s.settings.instance_id, &id)?;
            self.expect_vm(
                ObjectKind::Snapshot,
                &id,
                &s.settings.virtual_system_identifier,
            )?;
            expect_equal(
                &id,
                "VirtualSystemSettings.VirtualSystemIdentifier",
                &ids::cim_guid(&s.vm_settings.virtual_system_identifier),
                &ids::cim_guid(&s.settings.virtual_system_identifier),
            )?;
        }
        Ok(())
    }

    fn validate_reference_points(&self) -> std::result::Result<(), CatalogError> {
        let mut seen = HashSet::new();
        for rp in &self.reference_points {
            let expected =
                ids::reference_point_instance_id(&rp.virtual_system_identifier, &rp.guid);
            if !seen.insert(rp.guid) {
                return Err(CatalogError::DuplicateIdentifier {
                    what: ObjectKind::ReferencePoint,
                    id: expected,
                });
            }
            expect_equal(&expected, "InstanceID", &rp.instance_id, &expected)?;
            self.expect_vm(
                ObjectKind::ReferencePoint,
                &rp.instance_id,
                &rp.virtual_system_identifier,
            )?;
        }
        Ok(())
    }

    fn expect_vm(
        &self,
        what: ObjectKind,
        id: &str,
        vm: &Uuid,
    ) -> std::result::Result<(), CatalogError> {
        if self.virtual_systems.iter().any(|v| v.name == *vm) {
            Ok(())
        } else {
            Err(CatalogError::UnknownVirtualSystem {
                what,
                id: id.to_owned(),
                vm: ids::cim_guid(vm),
            })
        }
    }

    /// Frozen disks of snapshots and reference points, with their owner's id.
    fn frozen_disks(&self) -> impl Iterator<Item = (String, &FrozenDisk)> {
        let snaps = self.snapshots.iter().flat_map(|s| {
            s.disks
                .iter()
                .map(move |d| (s.settings.instance_id.clone(), d))
        });
        let rps = self
            .reference_points
            .iter()
            .flat_map(|r| r.disks.iter().map(move |d| (r.instance_id.clone(), d)));
        snaps.chain(rps)
    }

    fn validate_epochs(&self) -> std::result::Result<(), CatalogError> {
        let current: HashMap<Uuid, (&str, u64)> = self
            .virtual_systems
            .iter()
            .flat_map(|vm| vm.disks.iter())
            .map(|d| (d.disk_guid, (d.instance_id.as_str(), d.rct_epoch)))
            .collect();
        for (owner, frozen) in self.frozen_disks() {
            if let Some(&(disk, counter)) = current.get(&frozen.disk_guid)
                && frozen.rct_epoch > counter
            {
                return Err(CatalogError::EpochAhead {
                    id: owner,
                    disk: disk.to_owned(),
                    epoch: frozen.rct_epoch,
                    current: counter,
                });
            }
        }
        Ok(())
    }

    fn validate_active_leaves(&self) -> std::result::Result<(), CatalogError> {
        let mut leaves: HashMap<&Path, &str> = HashMap::new();
        for disk in self.virtual_systems.iter().flat_map(|vm| vm.disks.iter()) {
            if let Some(other) = leaves.insert(disk.active_leaf(), &disk.instance_id) {
                return Err(CatalogError::ActiveLeafShared {
                    path: disk.active_leaf().to_owned(),
                    owner: disk.instance_id.clone(),
                    other: other.to_owned(),
                });
            }
        }
        let shared = |path: &Path, other: String| -> std::result::Result<(), CatalogError> {
            match leaves.get(path) {
                Some(owner) => Err(CatalogError::ActiveLeafShared {
                    path: path.to_owned(),
                    owner: (*owner).to_owned(),
                    other,
                }),
                None => Ok(()),
            }
        };
        for disk in self.virtual_systems.iter().flat_map(|vm| vm.disks.iter()) {
            for layer in disk.chain.parents() {
                shared(&layer.path, disk.instance_id.clone())?;
            }
        }
        for (owner, frozen) in self.frozen_disks() {
            for layer in frozen.chain.layers() {
                shared(&layer.path, owner.clone())?;
            }
        }
        Ok(())
    }
}

fn expect_equal(
    object: &str,
    field: &'static str,
    found: &str,
    expected: &str,
) -> std::result::Result<(), CatalogError> {
    if ids::instance_ids_equal(found, expected) {
        Ok(())
    } else {
        Err(CatalogError::IdentifierMismatch {
            object: object.to_owned(),
            field,
            found: found.to_owned(),
            expected: expected.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::{Value, json};

    use super::*;
    use crate::frozen::FrozenDisk;
    use crate::model::{
        ChainLayer, LayerChain, VIRTUAL_SYSTEM_TYPE_REALIZED,
        VIRTUAL_SYSTEM_TYPE_SNAPSHOT_RECOVERY, VirtualDisk, VirtualSystemSettingData,
    };
    use crate::timestamp::Timestamp;

    const VM: Uuid = Uuid::from_u128(0x1111_1111_1111_4111_8111_1111_1111_1111);
    const DISK: Uuid = Uuid::from_u128(0x2222_2222_2222_4222_8222_2222_2222_2222);
    const SNAP: Uuid = Uuid::from_u128(0x3333_3333_3333_4333_8333_3333_3333_3333);
    const RP: Uuid = Uuid::from_u128(0x4444_4444_4444_4444_8444_4444_4444_4444);

    fn layer(p: &str, g: u128) -> ChainLayer {
        ChainLayer {
            path: PathBuf::from(p),
            data_write_guid: Uuid::from_u128(g),
        }
    }

    fn vssd(instance: Uuid, name: &str, kind: &str) -> VirtualSystemSettingData {
        VirtualSystemSettingData {
            instance_id: ids::settings_instance_id(&instance),
            element_name: name.to_owned(),
            virtual_system_type: kind.to_owned(),
            virtual_system_identifier: VM,
            creation_time: Timestamp::now(),
            parent: None,
        }
    }

    /// A valid catalog: one VM with one disk (two snapshots taken: an old
    /// one converted to a reference point, a newer one still a snapshot).
    fn valid() -> Catalog {
        let frozen = |leaf: &str, epoch: u64, layers: Vec<ChainLayer>| FrozenDisk {
            instance_id: ids::disk_instance_id(&VM, &DISK, 0),
            disk_guid: DISK,
            element_name: "Hard Disk Image".to_owned(),
            chain: LayerChain::new(layers).unwrap(),
            rct_epoch: epoch,
            epoch_layer: PathBuf::from(leaf),
        };
        let mut c = Catalog::new();
        c.virtual_systems.push(VirtualSystem {
            name: VM,
            element_name: "vm1".to_owned(),
            settings: vssd(VM, "vm1", VIRTUAL_SYSTEM_TYPE_REALIZED),
            disks: vec![VirtualDisk {
                instance_id: ids::disk_instance_id(&VM, &DISK, 0),
                disk_guid: DISK,
                address: 0,
                element_name: "Hard Disk Image".to_owned(),
                chain: LayerChain::new(vec![
                    layer("/h/c.avhdx", 3),
                    layer("/h/b.avhdx", 2),
                    layer("/d/a.vhdx", 1),
                ])
                .unwrap(),
                rct_epoch: 2,
                tracking: crate::tracking::DiskTracking::default(),
            }],
        });
        c.reference_points.push(ReferencePoint {
            instance_id: ids::reference_point_instance_id(&VM, &RP),
            guid: RP,
            virtual_system_identifier: VM,
            element_name: "vm1 - (x)".to_owned(),
            reference_point_type: 2,
            consistency_level: 2,
            has_associated_data: true,
            creation_time: Timestamp::now(),
            source_snapshot: "Microsoft:gone".to_owned(),
            settings: vssd(VM, "vm1", VIRTUAL_SYSTEM_TYPE_REALIZED),
            disks: vec![frozen("/h/b.avhdx", 1, vec![layer("/d/a.vhdx", 1)])],
            exports: Vec::new(),
        });
        c.snapshots.push(Snapshot {
            settings: vssd(SNAP, "vm1 - (y)", VIRTUAL_SYSTEM_TYPE_SNAPSHOT_RECOVERY),
            guid: SNAP,
            snapshot_type: 32768,
            consistency_level: 2,
            vm_settings: vssd(VM, "vm1", VIRTUAL_SYSTEM_TYPE_REALIZED),
            disks: vec![frozen(
                "/h/c.avhdx",
                2,
                vec![layer("/h/b.avhdx", 2), layer("/d/a.vhdx", 1)],
            )],
        });
        c
    }

    fn parse_mutated(
        mutate: impl FnOnce(&mut Value),
    ) -> std::result::Result<Catalog, CatalogError> {
        let mut v = serde_json::to_value(valid()).unwrap();
        mutate(&mut v);
        Catalog::parse(&serde_json::to_string_pretty(&v).unwrap())
    }

    #[test]
    fn valid_catalog_round_trips() {
        let c = valid();
        let text = serde_json::to_string_pretty(&c).unwrap();

        let back = Catalog::parse(&text).unwrap();

        assert_eq!(back, c);
    }

    #[test]
    fn save_then_load_gives_the_same_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CATALOG_FILE_NAME);
        let c = valid();

        c.save(&path).unwrap();

        assert_eq!(Catalog::load(&path).unwrap(), c);
    }

    #[test]
    fn syntax_error_reports_line_and_column() {
        let err = Catalog::parse("{\n  \"FormatVersion\": 1,\n  \"HostGuid\": ]\n}").unwrap_err();
        assert!(
            matches!(
                err,
                CatalogError::Parse {
                    line: 3,
                    column: 15,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn load_names_the_file_on_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CATALOG_FILE_NAME);
        std::fs::write(&path, "{\"FormatVersion\": 1,").unwrap();

        let err = Catalog::load(&path).unwrap_err();

        assert!(
            matches!(&err, HostError::CatalogCorrupt { path: p, detail: CatalogError::Parse { line: 1, .. } } if p == &path),
            "{err:?}"
        );
        assert!(err.to_string().contains(CATALOG_FILE_NAME), "{err}");
    }

    #[test]
    fn unknown_field_is_a_parse_error() {
        let err = parse_mutated(|v| v["Surprise"] = json!(1)).unwrap_err();
        assert!(
            matches!(err, CatalogError::Parse { ref message, .. } if message.contains("Surprise")),
            "{err:?}"
        );
    }

    #[test]
    fn empty_chain_is_a_parse_error() {
        let err =
            parse_mutated(|v| v["VirtualSystems"][0]["Disks"][0]["Chain"] = json!([])).unwrap_err();
        assert!(
            matches!(err, CatalogError::Parse { ref message, .. } if message.contains("no layer")),
            "{err:?}"
        );
    }

    #[test]
    fn newer_format_version_is_refused() {
        let err = parse_mutated(|v| v["FormatVersion"] = json!(2)).unwrap_err();
        assert_eq!(
            err,
            CatalogError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        );
    }

    #[test]
    fn vm_settings_instance_id_must_match_name() {
        let err = parse_mutated(|v| {
            v["VirtualSystems"][0]["Settings"]["InstanceID"] =
                json!(ids::settings_instance_id(&SNAP));
        })
        .unwrap_err();
        assert!(
            matches!(
                err,
                CatalogError::IdentifierMismatch {
                    field: "Settings.InstanceID",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn disk_instance_id_must_match_its_guids() {
        let err = parse_mutated(|v| v["VirtualSystems"][0]["Disks"][0]["Address"] = json!(1))
            .unwrap_err();
        assert!(
            matches!(
                err,
                CatalogError::IdentifierMismatch {
                    field: "Disks[].InstanceID",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn reference_point_instance_id_must_match_its_guids() {
        let err = parse_mutated(|v| {
            v["ReferencePoints"][0]["InstanceID"] =
                json!(ids::reference_point_instance_id(&VM, &SNAP));
        })
        .unwrap_err();
        assert!(
            matches!(
                err,
                CatalogError::IdentifierMismatch {
                    field: "InstanceID",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn duplicate_vm_is_refused() {
        let err = parse_mutated(|v| {
            let vm = v["VirtualSystems"][0].clone();
            v["VirtualSystems"].as_array_mut().unwrap().push(vm);
        })
        .unwrap_err();
        assert!(
            matches!(
                err,
                CatalogError::DuplicateIdentifier {
                    what: ObjectKind::VirtualSystem,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn duplicate_element_name_is_refused_case_insensitively() {
        let err = parse_mutated(|v| {
            let mut vm = v["VirtualSystems"][0].clone();
            let other = Uuid::from_u128(99);
            vm["Name"] = json!(ids::cim_guid(&other));
            vm["ElementName"] = json!("VM1");
            vm["Settings"]["ElementName"] = json!("VM1");
            vm["Settings"]["InstanceID"] = json!(ids::settings_instance_id(&other));
            vm["Settings"]["VirtualSystemIdentifier"] = json!(ids::cim_guid(&other));
            vm["Disks"] = json!([]);
            v["VirtualSystems"].as_array_mut().unwrap().push(vm);
        })
        .unwrap_err();
        assert_eq!(
            err,
            CatalogError::DuplicateElementName {
                name: "VM1".to_owned()
            }
        );
    }

    #[test]
    fn element_name_that_escapes_the_export_folder_is_refused() {
        let err = parse_mutated(|v| {
            v["VirtualSystems"][0]["ElementName"] = json!("../etc");
            v["VirtualSystems"][0]["Settings"]["ElementName"] = json!("../etc");
        })
        .unwrap_err();
        assert!(
            matches!(err, CatalogError::InvalidElementName { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn snapshot_of_unknown_vm_is_refused() {
        let err = parse_mutated(|v| {
            let other = json!(ids::cim_guid(&Uuid::from_u128(98)));
            v["Snapshots"][0]["Settings"]["VirtualSystemIdentifier"] = other.clone();
            v["Snapshots"][0]["VirtualSystemSettings"]["VirtualSystemIdentifier"] = other;
        })
        .unwrap_err();
        assert!(
            matches!(
                err,
                CatalogError::UnknownVirtualSystem {
                    what: ObjectKind::Snapshot,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn active_leaf_inside_a_frozen_chain_is_refused() {
        let err = parse_mutated(|v| {
            v["ReferencePoints"][0]["Disks"][0]["Chain"][0]["Path"] = json!("/h/c.avhdx");
        })
        .unwrap_err();
        assert!(
            matches!(err, CatalogError::ActiveLeafShared { ref path, .. } if path == Path::new("/h/c.avhdx")),
            "{err:?}"
        );
    }

    #[test]
    fn epoch_beyond_the_disk_counter_is_refused() {
        let err =
            parse_mutated(|v| v["Snapshots"][0]["Disks"][0]["RctEpoch"] = json!(3)).unwrap_err();
        assert!(
            matches!(
                err,
                CatalogError::EpochAhead {
                    epoch: 3,
                    current: 2,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
