//! Run parameters: the schema a task declares and the check of what a trigger sends.
//!
//! A schema is a subset of JSON Schema for an object: `properties`, each with a `type`
//! (`string`, `integer`, `number`, `boolean`, `array`, `object`), and optionally `enum`,
//! `minimum`, `maximum`, `maxLength` (strings) and `default`; and `required`. A parameter not in
//! `properties` is refused. [`ParamSchema::apply`] checks a trigger's params and fills in the
//! defaults, naming every bad field at once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Most properties a schema declares.
pub const MAX_PROPERTIES: usize = 100;
/// Longest parameter name.
pub const MAX_NAME_LEN: usize = 64;
/// Most bytes of a run's params as JSON (they travel in its job and its environment).
pub const MAX_PARAMS_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
    Array,
    Object,
}

/// One parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(rename = "type")]
    pub kind: ParamType,
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    #[serde(default, rename = "maxLength", skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What a task's runs take as params.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamSchema {
    /// Always `object` when given.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, ParamSpec>,
    #[serde(default)]
    pub required: Vec<String>,
}

impl ParamSpec {
    /// Why `value` does not fit, if it does not.
    fn check(&self, value: &Value) -> Option<String> {
        let fits = match self.kind {
            ParamType::String => value.is_string(),
            ParamType::Integer => value.is_i64() || value.is_u64(),
            ParamType::Number => value.is_number(),
            ParamType::Boolean => value.is_boolean(),
            ParamType::Array => value.is_array(),
            ParamType::Object => value.is_object(),
        };
        if !fits {
            return Some(format!("must be of type {}", type_name(self.kind)));
        }
        if let Some(allowed) = &self.allowed {
            if !allowed.contains(value) {
                return Some(format!("must be one of {}", Value::from(allowed.clone())));
            }
        }
        if let Some(n) = value.as_f64() {
            if self.minimum.is_some_and(|m| n < m) {
                return Some(format!("must be at least {}", self.minimum.unwrap()));
            }
            if self.maximum.is_some_and(|m| n > m) {
                return Some(format!("must be at most {}", self.maximum.unwrap()));
            }
        }
        if let (Some(max), Some(s)) = (self.max_length, value.as_str()) {
            if s.chars().count() > max {
                return Some(format!("must be at most {max} characters"));
            }
        }
        None
    }
}

fn type_name(t: ParamType) -> &'static str {
    match t {
        ParamType::String => "string",
        ParamType::Integer => "integer",
        ParamType::Number => "number",
        ParamType::Boolean => "boolean",
        ParamType::Array => "array",
        ParamType::Object => "object",
    }
}

impl ParamSchema {
    /// Refuses a schema that cannot work: too many or badly named properties, a `required`
    /// name it does not declare, a default that does not fit its own property.
    pub fn validate(&self) -> Result<(), String> {
        if self.kind.as_deref().is_some_and(|k| k != "object") {
            return Err("params.type: must be \"object\"".into());
        }
        if self.properties.len() > MAX_PROPERTIES {
            return Err(format!("params.properties: at most {MAX_PROPERTIES}"));
        }
        for (name, spec) in &self.properties {
            let ok = !name.is_empty()
                && name.len() <= MAX_NAME_LEN
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                return Err(format!(
                    "params.properties: {name:?} is not a name (1-{MAX_NAME_LEN} of A-Z a-z 0-9 _ -)"
                ));
            }
            if let Some(why) = spec.default.as_ref().and_then(|d| spec.check(d)) {
                return Err(format!("params.properties.{name}.default: {why}"));
            }
        }
        if let Some(r) = self
            .required
            .iter()
            .find(|r| !self.properties.contains_key(*r))
        {
            return Err(format!("params.required: {r:?} is not a declared property"));
        }
        Ok(())
    }

    /// `input` checked against the schema, with defaults filled in; or every reason it does
    /// not fit, one per field.
    pub fn apply(&self, input: &Map<String, Value>) -> Result<Map<String, Value>, Vec<String>> {
        let mut out = Map::new();
        let mut errors = vec![];
        for (name, value) in input {
            match self.properties.get(name) {
                None => errors.push(format!("params.{name}: not a parameter of this task")),
                Some(spec) => match spec.check(value) {
                    Some(why) => errors.push(format!("params.{name}: {why}")),
                    None => {
                        out.insert(name.clone(), value.clone());
                    }
                },
            }
        }
        for (name, spec) in &self.properties {
            if out.contains_key(name) || input.contains_key(name) {
                continue;
            }
            if let Some(d) = &spec.default {
                out.insert(name.clone(), d.clone());
            } else if self.required.contains(name) {
                errors.push(format!("params.{name}: required"));
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }
}

/// The params a run gets for `given` (a trigger's, or a schedule's): checked against `schema`
/// with its defaults filled in, or as given when there is no schema; at most
/// [`MAX_PARAMS_BYTES`] as JSON. An error names every bad field.
pub fn resolve(
    schema: Option<&ParamSchema>,
    given: Option<&Map<String, Value>>,
) -> Result<Option<Value>, Vec<String>> {
    let params = match (schema, given) {
        (Some(schema), given) => Some(schema.apply(given.unwrap_or(&Map::new()))?),
        (None, given) => given.cloned(),
    };
    let Some(params) = params else {
        return Ok(None);
    };
    let params = Value::Object(params);
    let size = params.to_string().len();
    if size > MAX_PARAMS_BYTES {
        return Err(vec![format!(
            "params: {size} bytes as JSON, at most {MAX_PARAMS_BYTES}"
        )]);
    }
    Ok(Some(params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> ParamSchema {
        serde_json::from_value(json!({
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 5},
                "days": {"type": "integer", "minimum": 1, "maximum": 7, "default": 3},
                "unit": {"type": "string", "enum": ["c", "f"]},
                "verbose": {"type": "boolean"}
            },
            "required": ["city"]
        }))
        .unwrap()
    }

    #[test]
    fn fills_defaults_and_names_every_bad_field() {
        let s = schema();
        s.validate().unwrap();
        let ok = s
            .apply(json!({"city": "Paris"}).as_object().unwrap())
            .unwrap();
        assert_eq!(Value::Object(ok), json!({"city": "Paris", "days": 3}));
        let bad = s
            .apply(
                json!({"days": 9, "unit": "k", "verbose": "yes", "zone": 1})
                    .as_object()
                    .unwrap(),
            )
            .unwrap_err();
        assert_eq!(
            bad,
            [
                "params.days: must be at most 7",
                "params.unit: must be one of [\"c\",\"f\"]",
                "params.verbose: must be of type boolean",
                "params.zone: not a parameter of this task",
                "params.city: required",
            ]
        );
        let long = s
            .apply(json!({"city": "Berlin"}).as_object().unwrap())
            .unwrap_err();
        assert_eq!(long, ["params.city: must be at most 5 characters"]);
    }

    #[test]
    fn a_schema_that_cannot_work_is_refused() {
        let mut s = schema();
        s.required.push("nope".into());
        assert!(s.validate().unwrap_err().contains("nope"));
        let mut s = schema();
        s.properties.get_mut("days").unwrap().default = Some(json!(0));
        assert!(s.validate().unwrap_err().contains("days.default"));
        let s: ParamSchema =
            serde_json::from_value(json!({"properties": {"a b": {"type": "string"}}})).unwrap();
        assert!(s.validate().is_err());
    }
}
