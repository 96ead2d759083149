//! The association classes the provider serves, and `Associators` /
//! `References` over them (DSP0200 §5.3.2.x semantics).
//!
//! | association | ends (role → class) | source |
//! |---|---|---|
//! | `Msvm_ReferencePointOfVirtualSystem` | `Antecedent` → VM, `Dependent` → reference point | hyperv-api.md §1.2 |
//! | `Msvm_SnapshotOfVirtualSystem` | `Antecedent` → VM, `Dependent` → snapshot settings | §1.2 |
//! | `Msvm_AffectedJobElement` | `AffectedElement` → any, `AffectingElement` → job; `ElementEffects[]` (5 Create for what the job made, 0 Unknown for what it worked on) | §1.2 |
//! | `Msvm_SettingsDefineState` | `ManagedElement` → VM, `SettingData` → its realized settings | §7.2 |
//! | `Msvm_VirtualSystemSettingDataComponent` | `GroupComponent` → settings (VM or snapshot), `PartComponent` → disk SASD | §7.2 |
//!
//! An association instance's path has its two references as keys (their
//! values are the referenced paths' text).

use refpoint_cim::{CimType, Instance, ObjectPath, PropertyValue};
use refpoint_jobs::AffectedElement;

use super::model::{ObjectSpace, is_a, names};

/// One association instance: class, two (role, reference) ends, extra properties.
#[derive(Debug, Clone)]
pub struct Association {
    /// Association class.
    pub class: &'static str,
    /// The two ends: (role name, referenced object path).
    pub ends: [(&'static str, ObjectPath); 2],
    /// Non-reference properties (e.g. `ElementEffects`).
    pub extra: Vec<(&'static str, PropertyValue, CimType)>,
}

impl Association {
    /// The association's own path: the two references as keys.
    pub fn path(&self) -> ObjectPath {
        let [(r0, p0), (r1, p1)] = &self.ends;
        ObjectPath::new(self.class)
            .with_key(r0, &p0.to_string())
            .with_key(r1, &p1.to_string())
    }

    /// The instance, references with `location` (server, namespace) when given.
    pub fn instance(&self, location: Option<(&str, &str)>) -> Instance {
        let mut i = Instance::new(self.class);
        for (role, path) in &self.ends {
            let mut path = path.clone();
            if let Some((server, ns)) = location {
                path = path.with_location(server, ns);
            }
            i = i.with(role, path);
        }
        for (name, value, cim_type) in &self.extra {
            i = i.with_typed(name, value.clone(), *cim_type);
        }
        i
    }

    /// The index of the end `path` names (with `role` if given).
    fn end_of(&self, path: &ObjectPath, role: Option<&str>) -> Option<usize> {
        self.ends.iter().position(|(r, p)| {
            role.is_none_or(|want| want.eq_ignore_ascii_case(r)) && names(path, p)
        })
    }
}

fn pair(
    class: &'static str,
    a: (&'static str, &ObjectPath),
    b: (&'static str, &ObjectPath),
) -> Association {
    Association {
        class,
        ends: [(a.0, a.1.relative()), (b.0, b.1.relative())],
        extra: Vec::new(),
    }
}

/// `Msvm_ReferencePointOfVirtualSystem`.
pub fn reference_point_of(vm: &ObjectPath, rp: &ObjectPath) -> Association {
    pair(
        "Msvm_ReferencePointOfVirtualSystem",
        ("Antecedent", vm),
        ("Dependent", rp),
    )
}

/// `Msvm_SnapshotOfVirtualSystem`.
pub fn snapshot_of(vm: &ObjectPath, snapshot: &ObjectPath) -> Association {
    pair(
        "Msvm_SnapshotOfVirtualSystem",
        ("Antecedent", vm),
        ("Dependent", snapshot),
    )
}

/// `Msvm_SettingsDefineState`.
pub fn settings_define_state(vm: &ObjectPath, settings: &ObjectPath) -> Association {
    pair(
        "Msvm_SettingsDefineState",
        ("ManagedElement", vm),
        ("SettingData", settings),
    )
}

/// `Msvm_VirtualSystemSettingDataComponent`.
pub fn settings_component(settings: &ObjectPath, sasd: &ObjectPath) -> Association {
    pair(
        "Msvm_VirtualSystemSettingDataComponent",
        ("GroupComponent", settings),
        ("PartComponent", sasd),
    )
}

/// `Msvm_AffectedJobElement` from the job manager's record.
pub fn affected_job_element(a: &AffectedElement) -> Association {
    let mut assoc = pair(
        "Msvm_AffectedJobElement",
        ("AffectedElement", &a.affected_element),
        ("AffectingElement", &a.affecting_element),
    );
    assoc.extra.push((
        "ElementEffects",
        PropertyValue::from(a.element_effects.clone()),
        CimType::Uint16,
    ));
    assoc
}

/// Filters of `Associators` / `References`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    /// `AssocClass` / `ResultClass` of `References`: the association's class.
    pub assoc_class: Option<&'a str>,
    /// `ResultClass` of `Associators`: the class of the other end.
    pub result_class: Option<&'a str>,
    /// `Role`: the role of the source object.
    pub role: Option<&'a str>,
    /// `ResultRole`: the role of the other end.
    pub result_role: Option<&'a str>,
}

/// The associations that refer to `source` and pass `filter`, each with
/// the index of the other end. Ends that no longer name an object (e.g. a
/// reference point a finished job destroyed) are left out.
pub fn matching<'s>(
    space: &'s ObjectSpace,
    source: &ObjectPath,
    filter: Filter<'_>,
) -> Vec<(&'s Association, usize)> {
    space
        .associations
        .iter()
        .filter(|a| filter.assoc_class.is_none_or(|c| is_a(a.class, c)))
        .filter_map(|a| {
            let mine = a.end_of(source, filter.role)?;
            let other = 1 - mine;
            let (other_role, other_path) = &a.ends[other];
            let role_ok = filter
                .result_role
                .is_none_or(|r| r.eq_ignore_ascii_case(other_role));
            let class_ok = filter
                .result_class
                .is_none_or(|c| is_a(&other_path.class_name, c));
            let exists = space.find(other_path).is_some();
            (role_ok && class_ok && exists).then_some((a, other))
        })
        .collect()
}
