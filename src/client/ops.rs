//! Client-side sequences a WMI client runs: finding a service singleton,
//! naming a reference point, polling a job to its end.

use std::time::Duration;

use refpoint_cim::{Instance, ObjectPath};

use super::{ClientError, ServiceClient};

/// JobStates after which a job changes no more: Completed (7), Terminated
/// (8), Killed (9), Exception (10), CompletedWithWarnings (32768).
pub const FINISHED_JOB_STATES: [u16; 5] = [7, 8, 9, 10, 32768];

/// Interval between two `GetInstance` polls of a job.
pub const JOB_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The path of the only instance of a service class (e.g.
/// `Msvm_VirtualSystemReferencePointService`).
///
/// # Errors
/// [`ClientError`]; `CIM_ERR_NOT_FOUND` when the class has no instance.
pub fn find_singleton(client: &ServiceClient, class: &str) -> Result<ObjectPath, ClientError> {
    client
        .enumerate_names(class)?
        .into_iter()
        .next()
        .ok_or_else(|| ClientError::Cim {
            method: "EnumerateInstanceNames".to_owned(),
            source: crate::serve::CimOpError::new(
                crate::serve::CimOpError::NOT_FOUND,
                format!("the service has no {class} instance"),
            ),
        })
}

/// A reference point named on the command line: an object path as is
/// (`Msvm_VirtualSystemReferencePoint.InstanceID="…"`, with or without
/// `\\server\namespace:`), or else an InstanceID
/// (`Microsoft:<VM GUID>\<RP GUID>` or the RP GUID) turned into the one-key
/// path.
pub fn resolve_reference_point_path(text: &str) -> ObjectPath {
    // The part before any quoted key value: a path names its class there.
    let head = text.split('"').next().unwrap_or("");
    let looks_like_path = text.starts_with("\\\\")
        || text.starts_with("//")
        || head.contains("Msvm_")
        || head.contains('=');
    if looks_like_path && let Ok(path) = text.parse::<ObjectPath>() {
        return path;
    }
    ObjectPath::new("Msvm_VirtualSystemReferencePoint").with_key("InstanceID", text)
}

/// `JobState` of a job instance (0 when absent or of the wrong type).
pub fn job_state(job: &Instance) -> u16 {
    job.get_u16("JobState").ok().flatten().unwrap_or(0)
}

/// Polls the job at `job` with `GetInstance` every [`JOB_POLL_INTERVAL`]
/// until its `JobState` is finished, calling `progress` with each snapshot;
/// returns the final instance.
///
/// # Errors
/// [`ClientError`] of a poll (e.g. the job was removed, the service stopped).
pub fn wait_for_job(
    client: &ServiceClient,
    job: &ObjectPath,
    mut progress: impl FnMut(&Instance),
) -> Result<Instance, ClientError> {
    loop {
        let inst = client.get(job)?;
        progress(&inst);
        if FINISHED_JOB_STATES.contains(&job_state(&inst)) {
            return Ok(inst);
        }
        std::thread::sleep(JOB_POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_and_paths_both_name_a_reference_point() {
        let id =
            r"Microsoft:0A0B0C0D-0000-0000-0000-000000000001\0A0B0C0D-0000-0000-0000-000000000002";

        let from_id = resolve_reference_point_path(id);
        let from_path = resolve_reference_point_path(&from_id.to_string());
        let from_full =
            resolve_reference_point_path(&format!(r"\\h\root\virtualization\v2:{from_id}"));

        assert_eq!(from_id.key("InstanceID"), Some(id));
        assert!(from_path.same_instance(&from_id));
        assert!(from_full.same_instance(&from_id));
        assert_eq!(
            resolve_reference_point_path("0A0B0C0D-0000-0000-0000-000000000002").key("InstanceID"),
            Some("0A0B0C0D-0000-0000-0000-000000000002")
        );
    }
}
