//! Shared by the `wmi_*` and `conformance_*` tests: an in-process host with
//! a fixture VM behind a [`Provider`], and the client-side helpers real
//! WMI clients use (wait for a job, follow `Msvm_AffectedJobElement`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use refpoint::cim::{Instance, ObjectPath};
use refpoint::fixture::{Fill, FixtureOutcome, FixtureSpec, make_fixture};
use refpoint::service::Refpoint;
use refpoint::wmi::{MethodMode, MethodOutput, ParamValue, Provider};

/// Bound for waits on conditions that must happen (reached only on a bug).
pub const MUST: Duration = Duration::from_secs(60);

/// A host directory with one fixture VM (and its first reference point).
#[derive(Debug)]
pub struct Env {
    /// Keeps the directory alive.
    pub temp: tempfile::TempDir,
    /// The host directory.
    pub host_dir: PathBuf,
    /// The provider over the open host.
    pub provider: Provider,
    /// The fixture's outcome (VM GUID, reference point, disks).
    pub fixture: FixtureOutcome,
}

/// What the fixture VM looks like.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Number of disks.
    pub disks: usize,
    /// Virtual size per disk, bytes.
    pub size: u64,
    /// VHDX block size, bytes.
    pub block_size: u32,
    /// Fill before the reference point.
    pub fill: Fill,
    /// Writes after it.
    pub writes_after: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            disks: 2,
            size: 16 << 20,
            block_size: 1 << 20,
            fill: Fill::Scattered { writes: 12 },
            writes_after: 6,
        }
    }
}

/// A fresh host with a fixture VM named `name`.
pub fn env(name: &str, shape: &Shape) -> Env {
    env_with(name, shape, MethodMode::Asynchronous, |_| {})
}

/// [`env`] with a method mode and a chance to change the engine settings.
pub fn env_with(
    name: &str,
    shape: &Shape,
    mode: MethodMode,
    tune: impl FnOnce(&mut Refpoint),
) -> Env {
    let temp = tempfile::tempdir().expect("tempdir");
    let host_dir = temp.path().join("host");
    let mut rp = Refpoint::init(&host_dir).expect("host init");
    let fixture = {
        let mut host = rp.host();
        make_fixture(
            &mut host,
            &FixtureSpec {
                name: name.to_owned(),
                disks: shape.disks,
                size: shape.size,
                seed: 7,
                block_size: shape.block_size,
                fill: shape.fill,
                writes_after: shape.writes_after,
                directory: temp.path().join("disks"),
            },
        )
        .expect("fixture")
    };
    tune(&mut rp);
    let provider = Provider::new(Arc::new(rp)).with_mode(mode);
    Env {
        temp,
        host_dir,
        provider,
        fixture,
    }
}

impl Env {
    /// A directory under the test's temporary directory (not created).
    pub fn path(&self, name: &str) -> PathBuf {
        self.temp.path().join(name)
    }

    /// The VM's `Msvm_ComputerSystem` path, found as clients do
    /// (enumerate, filter `Name`).
    pub fn vm_path(&self) -> ObjectPath {
        self.provider
            .enumerate_instances("Msvm_ComputerSystem")
            .expect("enumerate VMs")
            .into_iter()
            .find(|(_, i)| {
                i.get_string("Name").ok().flatten().as_deref()
                    == Some(self.fixture.vm_name.as_str())
            })
            .map(|(p, _)| p)
            .expect("fixture VM enumerated")
    }

    /// The fixture reference point's path (via `Msvm_ReferencePointOfVirtualSystem`).
    pub fn rp_path(&self) -> ObjectPath {
        self.provider
            .associators(
                &self.vm_path(),
                Some("Msvm_ReferencePointOfVirtualSystem"),
                Some("Msvm_VirtualSystemReferencePoint"),
                None,
                None,
            )
            .expect("associators")
            .into_iter()
            .find(|(_, i)| {
                i.get_string("InstanceID").ok().flatten().as_deref()
                    == Some(self.fixture.reference_point.as_str())
            })
            .map(|(p, _)| p)
            .expect("fixture reference point")
    }

    /// A service's singleton path (as enumerated).
    pub fn service(&self, class: &str) -> ObjectPath {
        self.provider
            .enumerate_instance_names(class)
            .expect("enumerate service")
            .into_iter()
            .next()
            .expect("service singleton")
    }

    /// Invokes `class.method` on the service singleton.
    pub fn call(&self, class: &str, method: &str, params: &[(&str, ParamValue)]) -> MethodOutput {
        let owned: Vec<(String, ParamValue)> = params
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.clone()))
            .collect();
        self.provider
            .invoke_method(&self.service(class), method, &owned)
            .expect("invoke_method")
    }
}

/// A scalar parameter.
pub fn val(text: impl Into<String>) -> ParamValue {
    ParamValue::Value(text.into())
}

/// A reference parameter.
pub fn reference(path: &ObjectPath) -> ParamValue {
    ParamValue::Reference(path.clone())
}

/// The `Job` out REF of a 4096 return.
pub fn job_ref(out: &MethodOutput) -> ObjectPath {
    assert_eq!(out.return_value, 4096, "{out:?}");
    match out.out("Job") {
        Some(ParamValue::Reference(p)) => p.clone(),
        other => panic!("no Job REF: {other:?}"),
    }
}

/// The `JobState` of a job instance.
pub fn state(job: &Instance) -> u16 {
    job.get_u16("JobState")
        .expect("JobState")
        .expect("JobState set")
}

/// The generic client loop: poll `GetInstance` while `JobState` is not in
/// {7, 32768, 8, 9, 10} (MS sample utilities, Bareos), bounded by [`MUST`].
pub fn wait_job(provider: &Provider, job: &ObjectPath) -> Instance {
    let started = Instant::now();
    loop {
        let instance = provider.get_instance(job).expect("job instance");
        if [7, 32768, 8, 9, 10].contains(&state(&instance)) {
            return instance;
        }
        assert!(started.elapsed() < MUST, "job {job} did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `job.GetRelated(class)`: the job's associated objects of `class`.
pub fn related(provider: &Provider, job: &ObjectPath, class: &str) -> Vec<(ObjectPath, Instance)> {
    provider
        .associators(
            job,
            Some("Msvm_AffectedJobElement"),
            Some(class),
            None,
            None,
        )
        .expect("associators of the job")
}

/// Bareos `get_result`: with a job, exactly one related object of `class`;
/// without, the out REF named `out_param`.
pub fn get_result(
    provider: &Provider,
    out: &MethodOutput,
    out_param: &str,
    class: &str,
) -> ObjectPath {
    match out.return_value {
        4096 => {
            let job = job_ref(out);
            let done = wait_job(provider, &job);
            assert_eq!(state(&done), 7, "job failed: {done:?}");
            let related = related(provider, &job, class);
            assert_eq!(related.len(), 1, "related {class}: {related:?}");
            related[0].0.clone()
        }
        0 => match out.out(out_param) {
            Some(ParamValue::Reference(p)) => p.clone(),
            other => panic!("no {out_param} REF: {other:?}"),
        },
        code => panic!("method failed with {code}: {:?}", out.error),
    }
}

/// Every file under `dir` (recursive), relative.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).map(Path::to_path_buf).unwrap_or(p));
        }
    }
    out.sort();
    out
}
