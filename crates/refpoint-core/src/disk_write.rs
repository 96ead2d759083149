//! Writes to a VM's disks. With no hypervisor, whatever stands in for the
//! guest writes through a [`VhdxWriter`] on the *active leaf* only; frozen
//! layers are never opened for writing. [`Host::refresh`] then records the
//! leaf's new DataWriteGuid (MS-VHDX §2.2.2) in the catalog.

use refpoint_vhdx::{Chain, VhdxWriter};

use crate::error::{ObjectKind, Result};
use crate::frozen::{LeafPolicy, open_verified};
use crate::host::{Host, not_found};
use crate::model::VirtualDisk;

impl VirtualDisk {
    /// Opens the disk's current chain read-only, after checking that its
    /// parents (frozen by contract) still carry their recorded
    /// DataWriteGuids. The active leaf may have changed.
    ///
    /// # Errors
    /// [`HostError::LayerModified`]; [`HostError::Vhdx`].
    pub fn open_chain(&self) -> Result<Chain> {
        open_verified(&self.chain, LeafPolicy::Active)
    }
}

impl Host {
    /// Opens the active leaf of disk `disk_instance_id` of `vm` for writing
    /// (the writer replays a dirty log and sets a new FileWriteGuid; the first
    /// write sets a new DataWriteGuid). The chain's frozen layers are checked
    /// first.
    ///
    /// Call [`Host::refresh`] after writing so that the catalog records the
    /// leaf's new DataWriteGuid.
    ///
    /// # Errors
    /// [`HostError::NotFound`] for an unknown VM or disk;
    /// [`HostError::LayerModified`]; [`HostError::Vhdx`].
    pub fn open_disk_writer(&self, vm: &str, disk_instance_id: &str) -> Result<VhdxWriter> {
        let disk = self
            .vm(vm)?
            .disk(disk_instance_id)
            .ok_or_else(|| not_found(ObjectKind::VirtualDisk, disk_instance_id))?;
        disk.open_chain()?;
        Ok(VhdxWriter::open(disk.active_leaf())?)
    }

    /// Re-reads every disk of `vm`: checks the frozen layers and records each
    /// active leaf's current DataWriteGuid. Writes the catalog only if a GUID
    /// changed.
    ///
    /// # Errors
    /// [`HostError::NotFound`]; [`HostError::LayerModified`] (naming the file
    /// and both GUIDs) if a frozen layer was written outside refpoint;
    /// [`HostError::Vhdx`]; [`HostError::Io`].
    pub fn refresh(&mut self, vm: &str) -> Result<()> {
        let index = self
            .vm_index(vm)
            .ok_or_else(|| not_found(ObjectKind::VirtualSystem, vm))?;
        let mut catalog = self.catalog.clone();
        let vm = catalog
            .virtual_systems
            .get_mut(index)
            .ok_or_else(|| not_found(ObjectKind::VirtualSystem, vm))?;
        let mut changed = false;
        for disk in &mut vm.disks {
            let current = disk.open_chain()?.leaf().data_write_guid();
            if current != disk.chain.leaf().data_write_guid {
                tracing::debug!(leaf = %disk.active_leaf().display(), %current, "active leaf written");
                disk.chain.set_leaf_data_write_guid(current);
                changed = true;
            }
        }
        if changed {
            self.commit(catalog)?;
        }
        Ok(())
    }
}
