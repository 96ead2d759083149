//! Defining virtual systems (the role of
//! `Msvm_VirtualSystemManagementService.DefineSystem` /
//! `ImportSystemDefinition` on Hyper-V): from a list of disk files, or by
//! importing a directory of VHDX/AVHDX files whose chains are discovered
//! through their parent locators (MS-VHDX §2.6.2.6).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use refpoint_vhdx::Chain;
use uuid::Uuid;

use crate::error::{HostError, Result};
use crate::host::Host;
use crate::ids::{cim_guid, disk_instance_id, settings_instance_id};
use crate::model::{
    ChainLayer, DISK_ELEMENT_NAME, LayerChain, VIRTUAL_SYSTEM_TYPE_REALIZED, VirtualDisk,
    VirtualSystem, VirtualSystemSettingData, check_vm_element_name,
};
use crate::timestamp::Timestamp;
use crate::tracking::DiskTracking;

impl Host {
    /// Defines a virtual system named `element_name` whose disks are the
    /// chains whose leaves are `disks` (controller 0, location = index).
    /// Each chain is opened with `Chain::open` (parents found through the
    /// locators, linkage checked) and recorded with absolute canonical paths
    /// and every layer's DataWriteGuid.
    ///
    /// # Errors
    /// [`HostError::InvalidParameter`] for an invalid or already used
    /// `ElementName` (names are unique, case-insensitively, since they name
    /// export folders), a path that is not UTF-8, a disk listed twice, a leaf
    /// that is already a layer of another VM, snapshot or reference point, or
    /// a chain that has another VM's active leaf as a parent;
    /// [`HostError::Vhdx`] (with the VHDX error's kind) for a missing,
    /// unreadable or corrupt disk; [`HostError::Io`].
    pub fn create_vm(&mut self, element_name: &str, disks: &[PathBuf]) -> Result<&VirtualSystem> {
        self.check_new_vm_name(element_name)?;
        let chains = disks
            .iter()
            .map(|d| open_disk_chain(d))
            .collect::<Result<Vec<_>>>()?;
        self.define(element_name, chains)
    }

    /// Imports every `.vhdx`/`.avhdx` file of `dir` (not recursive) as one
    /// virtual system: the leaves are the files that are no other file's
    /// parent, each leaf's chain (via `Chain::open`) is one disk, in leaf
    /// path order. Parents may lie outside `dir`.
    ///
    /// # Errors
    /// [`HostError::ImportUnresolved`] naming every file whose chain cannot
    /// be opened (corrupt, missing parent, broken linkage), with the first
    /// VHDX error and its kind; [`HostError::InvalidParameter`] if `dir` holds
    /// no VHDX file, and as [`Host::create_vm`].
    pub fn import_vm(&mut self, element_name: &str, dir: &Path) -> Result<&VirtualSystem> {
        self.check_new_vm_name(element_name)?;
        let dir = dir
            .canonicalize()
            .map_err(|e| HostError::io(dir, "resolve import directory", e))?;
        let candidates = vhdx_files(&dir)?;
        if candidates.is_empty() {
            return Err(HostError::InvalidParameter {
                parameter: "ImportDirectory",
                reason: format!("{} holds no .vhdx or .avhdx file", dir.display()),
            });
        }
        let opened: Vec<(PathBuf, Result<LayerChain>)> = candidates
            .into_iter()
            .map(|c| {
                let chain = open_disk_chain(&c);
                (c, chain)
            })
            .collect();
        let parents: HashSet<PathBuf> = opened
            .iter()
            .filter_map(|(_, c)| c.as_ref().ok())
            .flat_map(|c| c.parents().iter().map(|l| l.path.clone()))
            .collect();
        let mut chains = Vec::new();
        let mut unresolved = Vec::new();
        let mut first_error = None;
        for (path, chain) in opened {
            if parents.contains(&path) {
                continue;
            }
            match chain {
                Ok(c) => chains.push(c),
                Err(e) => {
                    unresolved.push(path);
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => self.define(element_name, chains),
            Some(HostError::Vhdx(source)) => Err(HostError::ImportUnresolved {
                dir,
                files: unresolved,
                source,
            }),
            Some(other) => Err(other),
        }
    }

    fn check_new_vm_name(&self, element_name: &str) -> Result<()> {
        check_vm_element_name(element_name).map_err(|reason| HostError::InvalidParameter {
            parameter: "ElementName",
            reason: format!("{element_name:?} {reason}"),
        })?;
        let wanted = element_name.to_lowercase();
        if let Some(other) = self
            .catalog
            .virtual_systems
            .iter()
            .find(|v| v.element_name.to_lowercase() == wanted)
        {
            return Err(HostError::InvalidParameter {
                parameter: "ElementName",
                reason: format!(
                    "a virtual system named {:?} already exists ({})",
                    other.element_name,
                    other.cim_name()
                ),
            });
        }
        Ok(())
    }

    /// `Msvm_VirtualSystemManagementService.AddResourceSettings` for a
    /// virtual hard disk: attaches the chain whose leaf is `leaf` (parents
    /// found through the parent locators) to `vm` as a new disk at the next
    /// free address. Its change tracking starts at epoch 0: reference points
    /// taken before do not contain it, and changes of it since one of them
    /// are lost ("the disk did not exist at the base").
    ///
    /// # Errors
    /// [`HostError::NotFound`] for an unknown VM; [`HostError::InvalidParameter`]
    /// if `leaf` is already a layer of a VM, snapshot or reference point, or
    /// a parent is another disk's active leaf; [`HostError::Vhdx`] if the
    /// chain does not open.
    pub fn add_disk(&mut self, vm: &str, leaf: &Path) -> Result<&VirtualDisk> {
        let index = self
            .vm_index(vm)
            .ok_or_else(|| crate::host::not_found(crate::error::ObjectKind::VirtualSystem, vm))?;
        let chain = open_disk_chain(leaf)?;
        self.check_new_chains(std::slice::from_ref(&chain))?;
        let mut catalog = self.catalog.clone();
        let system = catalog
            .virtual_systems
            .get_mut(index)
            .ok_or_else(|| crate::host::not_found(crate::error::ObjectKind::VirtualSystem, vm))?;
        let address = system
            .disks
            .iter()
            .map(|d| d.address.saturating_add(1))
            .max()
            .unwrap_or(0);
        let disk_guid = Uuid::new_v4();
        let name = system.name;
        system.disks.push(VirtualDisk {
            instance_id: disk_instance_id(&name, &disk_guid, address),
            disk_guid,
            address,
            element_name: DISK_ELEMENT_NAME.to_owned(),
            chain,
            rct_epoch: 0,
            tracking: DiskTracking::default(),
        });
        self.commit(catalog)?;
        self.vm(&cim_guid(&name))?
            .disks
            .iter()
            .find(|d| d.disk_guid == disk_guid)
            .ok_or_else(|| {
                crate::host::not_found(crate::error::ObjectKind::VirtualDisk, &cim_guid(&disk_guid))
            })
    }

    /// Checks that `chains` do not collide with each other or with the catalog.
    fn check_new_chains(&self, chains: &[LayerChain]) -> Result<()> {
        let mut leaves = HashSet::new();
        for chain in chains {
            let leaf = &chain.leaf().path;
            if !leaves.insert(leaf.clone()) {
                return Err(in_use(leaf, "is listed twice".to_owned()));
            }
            if let Some(owner) = self.layer_owner(leaf) {
                return Err(in_use(leaf, format!("is already a layer of {owner}")));
            }
            for parent in chain.parents() {
                if let Some(owner) = self.active_leaf_owner(&parent.path) {
                    return Err(in_use(
                        &parent.path,
                        format!("is the active (writable) disk of {owner}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks that `chains` do not collide with each other or with the
    /// catalog, then records the new VM.
    fn define(&mut self, element_name: &str, chains: Vec<LayerChain>) -> Result<&VirtualSystem> {
        self.check_new_chains(&chains)?;
        let name = Uuid::new_v4();
        let now = Timestamp::now();
        let mut disks = Vec::with_capacity(chains.len());
        for (address, chain) in (0u32..).zip(chains) {
            let disk_guid = Uuid::new_v4();
            disks.push(VirtualDisk {
                instance_id: disk_instance_id(&name, &disk_guid, address),
                disk_guid,
                address,
                element_name: DISK_ELEMENT_NAME.to_owned(),
                chain,
                rct_epoch: 0,
                tracking: DiskTracking::default(),
            });
        }
        let vm = VirtualSystem {
            name,
            element_name: element_name.to_owned(),
            settings: VirtualSystemSettingData {
                instance_id: settings_instance_id(&name),
                element_name: element_name.to_owned(),
                virtual_system_type: VIRTUAL_SYSTEM_TYPE_REALIZED.to_owned(),
                virtual_system_identifier: name,
                creation_time: now,
                parent: None,
            },
            disks,
        };
        let mut catalog = self.catalog.clone();
        catalog.virtual_systems.push(vm);
        self.commit(catalog)?;
        tracing::info!(vm = element_name, name = %cim_guid(&name), "virtual system defined");
        self.vm(&cim_guid(&name))
    }

    /// Which VM disk, snapshot or reference point has `path` as a layer.
    fn layer_owner(&self, path: &Path) -> Option<String> {
        let c = &self.catalog;
        for vm in &c.virtual_systems {
            if vm.disks.iter().any(|d| d.chain.contains(path)) {
                return Some(format!(
                    "virtual system {:?} ({})",
                    vm.element_name,
                    vm.cim_name()
                ));
            }
        }
        for s in &c.snapshots {
            if s.disks.iter().any(|d| d.chain.contains(path)) {
                return Some(format!("snapshot {}", s.settings.instance_id));
            }
        }
        for r in &c.reference_points {
            if r.disks.iter().any(|d| d.chain.contains(path)) {
                return Some(format!("reference point {}", r.instance_id));
            }
        }
        None
    }

    /// Which VM has `path` as an active leaf.
    fn active_leaf_owner(&self, path: &Path) -> Option<String> {
        self.catalog
            .virtual_systems
            .iter()
            .find(|vm| vm.disks.iter().any(|d| d.active_leaf() == path))
            .map(|vm| format!("virtual system {:?} ({})", vm.element_name, vm.cim_name()))
    }
}

fn in_use(path: &Path, reason: String) -> HostError {
    HostError::InvalidParameter {
        parameter: "HostResource",
        reason: format!("{} {reason}", path.display()),
    }
}

/// Opens the chain whose leaf is `leaf` and records it with canonical paths.
///
/// # Errors
/// [`HostError::Vhdx`] from `Chain::open`; [`HostError::InvalidParameter`]
/// for a path that is not UTF-8 (the catalog and CIM need text);
/// [`HostError::Io`].
pub(crate) fn open_disk_chain(leaf: &Path) -> Result<LayerChain> {
    let absolute =
        std::path::absolute(leaf).map_err(|e| HostError::io(leaf, "resolve disk path", e))?;
    let chain = Chain::open(&absolute)?;
    let mut layers = Vec::with_capacity(chain.layers().len());
    for file in chain.layers() {
        let path = file
            .path()
            .canonicalize()
            .map_err(|e| HostError::io(file.path(), "resolve disk path", e))?;
        if path.to_str().is_none() {
            return Err(HostError::InvalidParameter {
                parameter: "HostResource",
                reason: format!("{} is not valid UTF-8", path.display()),
            });
        }
        layers.push(ChainLayer {
            path,
            data_write_guid: file.data_write_guid(),
        });
    }
    LayerChain::new(layers).map_err(|reason| HostError::InvalidParameter {
        parameter: "HostResource",
        reason,
    })
}

/// Regular files of `dir` named `*.vhdx` or `*.avhdx` (any case), sorted.
fn vhdx_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| HostError::io(dir, "list directory", e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| HostError::io(dir, "list directory", e))?;
        let path = entry.path();
        let is_vhdx = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("vhdx") || e.eq_ignore_ascii_case("avhdx"));
        if !is_vhdx {
            continue;
        }
        // Follows symlinks, so that names compare equal to the canonical
        // layer paths of the opened chains.
        let is_file = std::fs::metadata(&path)
            .map_err(|e| HostError::io(&path, "stat", e))?
            .is_file();
        if is_file {
            files.push(
                path.canonicalize()
                    .map_err(|e| HostError::io(&path, "resolve", e))?,
            );
        }
    }
    files.sort();
    Ok(files)
}
