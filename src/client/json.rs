//! CIM instances as JSON objects with CIM property names, the shape the
//! CLI's `--json` output uses for objects read from the service.

use refpoint_cim::{CimValue, Instance, PropertyValue};
use serde_json::{Map, Value};

fn scalar(v: &CimValue) -> Value {
    match v {
        CimValue::Boolean(b) => Value::Bool(*b),
        CimValue::Uint8(n) => Value::from(*n),
        CimValue::Uint16(n) => Value::from(*n),
        CimValue::Uint32(n) => Value::from(*n),
        CimValue::Uint64(n) => Value::from(*n),
        CimValue::Sint8(n) => Value::from(*n),
        CimValue::Sint16(n) => Value::from(*n),
        CimValue::Sint32(n) => Value::from(*n),
        CimValue::Sint64(n) => Value::from(*n),
        CimValue::Real32(n) => Value::from(f64::from(*n)),
        CimValue::Real64(n) => Value::from(*n),
        other => Value::String(other.to_text()),
    }
}

/// `{ "<Property>": value, … }`: NULL → `null`, integers and reals → numbers,
/// booleans → booleans, arrays → arrays, everything else (strings,
/// datetimes, intervals, references as path text) → strings. Property order
/// is the instance's.
pub fn instance_to_json(inst: &Instance) -> Value {
    let mut map = Map::new();
    for p in &inst.properties {
        let value = match &p.value {
            PropertyValue::Null => Value::Null,
            PropertyValue::Scalar(v) => scalar(v),
            PropertyValue::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| i.as_ref().map_or(Value::Null, scalar))
                    .collect(),
            ),
        };
        map.insert(p.name.clone(), value);
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use refpoint_cim::CimType;

    #[test]
    fn values_keep_their_json_kinds() {
        let inst = Instance::new("Msvm_ConcreteJob")
            .with("InstanceID", "J1")
            .with("JobState", 7u16)
            .with("Cancellable", true)
            .with("ExportedDisks", vec!["a", "b"])
            .with_typed("ErrorDescription", PropertyValue::Null, CimType::String);

        let json = instance_to_json(&inst);

        assert_eq!(
            json,
            serde_json::json!({"InstanceID": "J1", "JobState": 7, "Cancellable": true,
                               "ExportedDisks": ["a", "b"], "ErrorDescription": null})
        );
    }
}
