//! Runs a decoded [`Request`] against a [`CimOperations`] implementation and
//! encodes the response body: namespace check (`CIM_ERR_INVALID_NAMESPACE`
//! for anything but `root/virtualization/v2`), operation, instance shaping
//! (`PropertyList`, `IncludeQualifiers`, `IncludeClassOrigin`).

use refpoint_cim::{Instance, ObjectPath};

use super::message::normalize_namespace;
use super::message::request::{AssociationFilter, Call, InstanceOptions, IntrinsicOp, Request};
use super::message::response::{
    IReturnValue, Location, encode_intrinsic_response, encode_method_response,
};
use super::operations::{CimOpError, CimOperations, status};
use crate::service::NAMESPACE;

/// Applies the instance options of DSP0200 to one returned instance:
/// `PropertyList` keeps only the listed properties; without
/// `IncludeQualifiers` instance and property qualifiers are dropped (an
/// embedded-instance string keeps its `EmbeddedInstance` qualifier, which
/// refpoint-cim writes as type information); without `IncludeClassOrigin`
/// `CLASSORIGIN` and `PROPAGATED` are dropped.
pub fn shape_instance(mut inst: Instance, options: &InstanceOptions) -> Instance {
    if let Some(list) = &options.property_list {
        inst.properties
            .retain(|p| list.iter().any(|n| n.eq_ignore_ascii_case(&p.name)));
    }
    if !options.include_qualifiers {
        inst.qualifiers.clear();
        for p in &mut inst.properties {
            p.qualifiers.clear();
        }
    }
    if !options.include_class_origin {
        for p in &mut inst.properties {
            p.class_origin = None;
            p.propagated = false;
        }
    }
    inst
}

fn check_namespace(ns: &str) -> Result<(), CimOpError> {
    if normalize_namespace(ns) == normalize_namespace(NAMESPACE) {
        Ok(())
    } else {
        Err(CimOpError::new(
            status::INVALID_NAMESPACE,
            format!(
                "namespace {ns} does not exist; refpoint serves {}",
                NAMESPACE.replace('\\', "/")
            ),
        ))
    }
}

fn associators(
    ops: &dyn CimOperations,
    path: &ObjectPath,
    f: &AssociationFilter,
) -> Result<Vec<(ObjectPath, Instance)>, CimOpError> {
    ops.associators(
        path,
        f.assoc_class.as_deref(),
        f.result_class.as_deref(),
        f.role.as_deref(),
        f.result_role.as_deref(),
    )
}

fn references(
    ops: &dyn CimOperations,
    path: &ObjectPath,
    f: &AssociationFilter,
) -> Result<Vec<(ObjectPath, Instance)>, CimOpError> {
    ops.references(path, f.result_class.as_deref(), f.role.as_deref())
}

fn paths(items: Vec<(ObjectPath, Instance)>) -> Vec<ObjectPath> {
    items.into_iter().map(|(p, _)| p).collect()
}

fn run_intrinsic(ops: &dyn CimOperations, op: &IntrinsicOp) -> Result<IReturnValue, CimOpError> {
    let shape_all = |items: Vec<(ObjectPath, Instance)>, o: &InstanceOptions| {
        items
            .into_iter()
            .map(|(p, i)| (p, shape_instance(i, o)))
            .collect::<Vec<_>>()
    };
    Ok(match op {
        IntrinsicOp::GetInstance {
            instance_name,
            options,
        } => IReturnValue::Instance(shape_instance(ops.get_instance(instance_name)?, options)),
        IntrinsicOp::EnumerateInstances {
            class_name,
            options,
        } => IReturnValue::NamedInstances(shape_all(ops.enumerate_instances(class_name)?, options)),
        IntrinsicOp::EnumerateInstanceNames { class_name } => {
            IReturnValue::InstanceNames(ops.enumerate_instance_names(class_name)?)
        }
        IntrinsicOp::Associators {
            object_name,
            filter,
            options,
        } => IReturnValue::ObjectsWithPath(shape_all(
            associators(ops, object_name, filter)?,
            options,
        )),
        IntrinsicOp::AssociatorNames {
            object_name,
            filter,
        } => IReturnValue::ObjectPaths(paths(associators(ops, object_name, filter)?)),
        IntrinsicOp::References {
            object_name,
            filter,
            options,
        } => {
            IReturnValue::ObjectsWithPath(shape_all(references(ops, object_name, filter)?, options))
        }
        IntrinsicOp::ReferenceNames {
            object_name,
            filter,
        } => IReturnValue::ObjectPaths(paths(references(ops, object_name, filter)?)),
    })
}

/// Runs `request` and returns the CIM-XML response body (always a
/// `SIMPLERSP`; failures are `ERROR` elements inside it).
pub fn dispatch(ops: &dyn CimOperations, request: &Request, location: &Location) -> String {
    match &request.call {
        Call::Intrinsic { namespace, op } => {
            let result = check_namespace(namespace)
                .and_then(|()| op.clone())
                .and_then(|op| run_intrinsic(ops, &op));
            encode_intrinsic_response(&request.message_id, &request.method, &result, location)
        }
        Call::Extrinsic { target, params, .. } => {
            let result = check_namespace(target.namespace.as_deref().unwrap_or(""))
                .and_then(|()| params.clone())
                .and_then(|params| ops.invoke_method(target, &request.method, &params));
            encode_method_response(&request.message_id, &request.method, &result)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use refpoint_cim::ObjectPath;

    use super::*;
    use crate::serve::message::request::{encode_intrinsic, encode_method_call, parse_request};
    use crate::serve::message::response::{ResponseBody, parse_response};
    use crate::serve::operations::{MethodOutput, ParamValue};

    /// One recorded `InvokeMethod`: target, method, parameters.
    pub(crate) type RecordedCall = (ObjectPath, String, Vec<(String, ParamValue)>);

    /// An in-memory provider with one job, recording method calls.
    #[derive(Debug, Default)]
    pub(crate) struct FakeOps {
        pub calls: Mutex<Vec<RecordedCall>>,
    }

    pub(crate) fn job_path() -> ObjectPath {
        ObjectPath::new("Msvm_ConcreteJob").with_key("InstanceID", "J1")
    }

    fn job() -> Instance {
        let mut inst = Instance::new("Msvm_ConcreteJob")
            .with("InstanceID", "J1")
            .with("JobState", 7u16)
            .with("Name", "job");
        for p in &mut inst.properties {
            p.class_origin = Some("CIM_Job".to_owned());
            p.propagated = true;
        }
        inst
    }

    impl CimOperations for FakeOps {
        fn invoke_method(
            &self,
            target: &ObjectPath,
            method: &str,
            params: &[(String, ParamValue)],
        ) -> Result<MethodOutput, CimOpError> {
            if let Ok(mut calls) = self.calls.lock() {
                calls.push((target.clone(), method.to_owned(), params.to_vec()));
            }
            if method != "RequestStateChange" {
                return Err(CimOpError::new(17, format!("no method {method}")));
            }
            Ok(MethodOutput {
                return_value: 4096,
                out_params: vec![("Job".to_owned(), ParamValue::Reference(job_path()))],
                error: None,
            })
        }
        fn enumerate_instances(
            &self,
            class: &str,
        ) -> Result<Vec<(ObjectPath, Instance)>, CimOpError> {
            if class.eq_ignore_ascii_case("Msvm_ConcreteJob") {
                Ok(vec![(job_path(), job())])
            } else {
                Err(CimOpError::new(5, format!("no class {class}")))
            }
        }
        fn enumerate_instance_names(&self, class: &str) -> Result<Vec<ObjectPath>, CimOpError> {
            Ok(self
                .enumerate_instances(class)?
                .into_iter()
                .map(|(p, _)| p)
                .collect())
        }
        fn get_instance(&self, path: &ObjectPath) -> Result<Instance, CimOpError> {
            if path.same_instance(&job_path()) {
                Ok(job())
            } else {
                Err(CimOpError::new(6, format!("no instance {path}")))
            }
        }
        fn associators(
            &self,
            path: &ObjectPath,
            _: Option<&str>,
            _: Option<&str>,
            _: Option<&str>,
            _: Option<&str>,
        ) -> Result<Vec<(ObjectPath, Instance)>, CimOpError> {
            self.get_instance(path)?;
            Ok(vec![(job_path(), job())])
        }
        fn references(
            &self,
            path: &ObjectPath,
            _: Option<&str>,
            _: Option<&str>,
        ) -> Result<Vec<(ObjectPath, Instance)>, CimOpError> {
            self.associators(path, None, None, None, None)
        }
    }

    fn location() -> Location {
        Location {
            host: "hv".to_owned(),
            namespace: NAMESPACE.to_owned(),
        }
    }

    fn run(text: &str) -> ResponseBody {
        let req = parse_request(text).expect("request");
        parse_response(&dispatch(&FakeOps::default(), &req, &location()))
            .expect("response")
            .body
    }

    #[test]
    fn get_instance_drops_class_origin_unless_asked() {
        let plain = IntrinsicOp::GetInstance {
            instance_name: job_path(),
            options: InstanceOptions::default(),
        };
        let with_origin = IntrinsicOp::GetInstance {
            instance_name: job_path(),
            options: InstanceOptions {
                include_class_origin: true,
                ..InstanceOptions::default()
            },
        };

        let ResponseBody::Intrinsic {
            result: Ok(IReturnValue::Instance(a)),
            ..
        } = run(&encode_intrinsic("1", NAMESPACE, &plain))
        else {
            panic!("instance")
        };
        let ResponseBody::Intrinsic {
            result: Ok(IReturnValue::Instance(b)),
            ..
        } = run(&encode_intrinsic("1", NAMESPACE, &with_origin))
        else {
            panic!("instance")
        };

        assert!(
            a.properties
                .iter()
                .all(|p| p.class_origin.is_none() && !p.propagated)
        );
        assert!(
            b.properties
                .iter()
                .all(|p| p.class_origin.as_deref() == Some("CIM_Job") && p.propagated)
        );
    }

    #[test]
    fn property_list_keeps_only_the_listed_properties() {
        let op = IntrinsicOp::EnumerateInstances {
            class_name: "Msvm_ConcreteJob".to_owned(),
            options: InstanceOptions {
                property_list: Some(vec!["jobstate".to_owned()]),
                ..InstanceOptions::default()
            },
        };

        let ResponseBody::Intrinsic {
            result: Ok(IReturnValue::NamedInstances(items)),
            ..
        } = run(&encode_intrinsic("1", NAMESPACE, &op))
        else {
            panic!("named instances")
        };

        let names: Vec<_> = items
            .iter()
            .flat_map(|(_, i)| i.properties.iter().map(|p| p.name.clone()))
            .collect();
        assert_eq!(names, vec!["JobState".to_owned()]);
    }

    #[test]
    fn other_namespace_is_invalid_namespace() {
        let op = IntrinsicOp::EnumerateInstanceNames {
            class_name: "Msvm_ConcreteJob".to_owned(),
        };

        let body = run(&encode_intrinsic("1", "root/cimv2", &op));

        assert!(
            matches!(body, ResponseBody::Intrinsic { result: Err(ref e), .. } if e.status == status::INVALID_NAMESPACE)
        );
    }

    #[test]
    fn provider_errors_travel_as_error_elements() {
        let op = IntrinsicOp::GetInstance {
            instance_name: ObjectPath::new("Msvm_ConcreteJob").with_key("InstanceID", "nope"),
            options: InstanceOptions::default(),
        };

        let body = run(&encode_intrinsic("1", NAMESPACE, &op));

        assert!(
            matches!(body, ResponseBody::Intrinsic { result: Err(ref e), .. } if e.status == 6 && e.description.contains("nope"))
        );
    }

    #[test]
    fn method_call_reaches_the_provider_with_its_target_and_params() {
        let ops = FakeOps::default();
        let mut target = job_path();
        target.namespace = Some(NAMESPACE.to_owned());
        let params = vec![(
            "RequestedState".to_owned(),
            ParamValue::Value("4".to_owned()),
        )];
        let text = encode_method_call("1", NAMESPACE, &target, "RequestStateChange", &params);

        let response = dispatch(&ops, &parse_request(&text).expect("req"), &location());

        let calls = ops.calls.lock().expect("calls");
        assert_eq!(
            calls.as_slice(),
            &[(target, "RequestStateChange".to_owned(), params)]
        );
        assert!(matches!(
            parse_response(&response).expect("rsp").body,
            ResponseBody::Extrinsic {
                result: Ok(MethodOutput {
                    return_value: 4096,
                    ..
                }),
                ..
            }
        ));
    }
}
