//! Pins on reference points: a running differential export marks its base
//! (and, to keep its layers still while it reads, its target) so that
//! `DestroyReferencePoint`, `RemoveAssociatedData` and any merge touching
//! the pinned reference point's frozen layers return
//! [`HostError::InUse`](crate::HostError::InUse) (32774) until the pin is dropped.
//!
//! Pins live in memory, shared by the [`Host`] and every [`PinGuard`]: the
//! host lock already keeps other processes out, so only jobs of the process
//! holding the host can be running.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use uuid::Uuid;

use crate::error::{HostError, Result};
use crate::host::Host;

/// Pin counts by reference point GUID.
#[derive(Debug, Default, Clone)]
pub(crate) struct Pins {
    counts: Arc<Mutex<BTreeMap<Uuid, u32>>>,
}

impl Pins {
    /// Whether the reference point `guid` is pinned.
    pub(crate) fn is_pinned(&self, guid: &Uuid) -> bool {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(guid)
            .is_some_and(|&n| n > 0)
    }

    fn pin(&self, guid: Uuid) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(guid).or_insert(0);
        *n = n.saturating_add(1);
    }

    fn unpin(&self, guid: &Uuid) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(guid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(guid);
            }
        }
    }
}

/// A pin on one reference point, released when dropped. `Send + 'static`:
/// move it into the job thread that reads the reference point.
#[derive(Debug)]
pub struct PinGuard {
    pins: Pins,
    guid: Uuid,
    instance_id: String,
}

impl PinGuard {
    /// `InstanceID` of the pinned reference point.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        self.pins.unpin(&self.guid);
    }
}

impl Host {
    /// Marks `rp` (InstanceID or GUID) as in use by a running export: until
    /// the guard is dropped, `destroy_reference_point` / `remove_associated_data`
    /// on it, and merges that would rewrite one of its frozen layers, fail
    /// with [`HostError::InUse`] (32774). Pins nest (counted).
    ///
    /// # Errors
    /// [`HostError::InvalidParameter`] / [`HostError::NotFound`] for the id.
    pub fn pin_reference_point(&self, rp: &str) -> Result<PinGuard> {
        let rp = self.reference_point(rp)?;
        self.pins.pin(rp.guid);
        Ok(PinGuard {
            pins: self.pins.clone(),
            guid: rp.guid,
            instance_id: rp.instance_id.clone(),
        })
    }

    /// Fails with [`HostError::InUse`] if the reference point `guid` is pinned.
    pub(crate) fn ensure_not_pinned(
        &self,
        guid: &Uuid,
        instance_id: &str,
        operation: &'static str,
    ) -> Result<()> {
        if self.pins.is_pinned(guid) {
            return Err(HostError::InUse {
                operation,
                object: instance_id.to_owned(),
                reason: "it is pinned by a running export".to_owned(),
            });
        }
        Ok(())
    }
}
