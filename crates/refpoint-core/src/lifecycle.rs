//! The reference point lifecycle: `RemoveAssociatedData`,
//! `DestroyReferencePoint`, `DestroySnapshot` and the reclamation of frozen
//! layers no longer needed, by merging them into their child (policy here;
//! the VHDX primitive is `refpoint_vhdx::merge`).

use crate::error::{HostError, Result};
use crate::host::Host;

impl Host {
    /// `Msvm_VirtualSystemReferencePointService.RemoveAssociatedData`:
    /// merges the reference point's frozen layers away (journal first) and
    /// sets `HasAssociatedData` = false. The reference point stays usable as
    /// a base of change queries and differential exports.
    ///
    /// # Errors
    /// [`HostError::InUse`] (32774) if it is pinned; as
    /// [`Host::reference_point`]; [`HostError::LayerModified`],
    /// [`HostError::Vhdx`], [`HostError::Io`].
    pub fn remove_associated_data(&mut self, rp: &str) -> Result<()> {
        let found = self.reference_point(rp)?;
        self.ensure_not_pinned(&found.guid, &found.instance_id, "RemoveAssociatedData")?;
        Err(HostError::NotSupported {
            what: "RemoveAssociatedData (in progress)".to_owned(),
        })
    }
}
