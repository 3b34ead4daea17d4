//! Bounds on a workflow's params schema, checked when it is stored, so that validating a
//! start request against it can never blow up: a size limit, a limit on how far `$ref`s
//! expand and on how deeply combinators nest, and local references only. (Patterns are
//! compiled by a linear-time engine: see `validation`.)

use std::collections::HashMap;

use serde_json::Value;

/// The largest schema accepted, serialized.
pub const MAX_SCHEMA_BYTES: usize = 32 * 1024;
/// The most schema nodes validation may visit once every `$ref` is expanded.
pub const MAX_EXPANDED_NODES: usize = 10_000;
/// The deepest nesting of combinators (`anyOf`, `oneOf`, `allOf`, `not`, `if`/`then`/`else`).
pub const MAX_COMBINATOR_DEPTH: usize = 8;
/// The deepest nesting of objects and arrays in the schema.
pub const MAX_DEPTH: usize = 32;

const COMBINATORS: &[&str] = &["anyOf", "oneOf", "allOf", "not", "if", "then", "else"];
const REFS: &[&str] = &["$ref", "$dynamicRef", "$recursiveRef"];

/// Checks `schema` against the bounds; the error says which one it breaks, and where. Answers
/// how many schema nodes validation may visit, once every `$ref` is expanded.
pub fn check(schema: &Value) -> Result<usize, String> {
    let size = serde_json::to_vec(schema)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_SCHEMA_BYTES {
        return Err(format!(
            "is {size} bytes; the most accepted is {MAX_SCHEMA_BYTES}"
        ));
    }
    let mut walk = Walk {
        root: schema,
        expanded: HashMap::new(),
        expanding: Vec::new(),
    };
    let nodes = walk.cost(schema, "", 0, 0)?;
    if nodes > MAX_EXPANDED_NODES {
        return Err(format!(
            "expands to {nodes} schema nodes once its $refs are followed; the most accepted \
             is {MAX_EXPANDED_NODES} (validation cost grows with it)"
        ));
    }
    Ok(nodes)
}

struct Walk<'a> {
    root: &'a Value,
    /// The expanded cost of each reference target already measured.
    expanded: HashMap<String, usize>,
    /// The reference targets being measured: meeting one again is a cycle.
    expanding: Vec<String>,
}

impl Walk<'_> {
    /// The number of nodes validation may visit under `node`, with references expanded.
    fn cost(
        &mut self,
        node: &Value,
        at: &str,
        depth: usize,
        combinators: usize,
    ) -> Result<usize, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nests deeper than {MAX_DEPTH} levels at {at}"));
        }
        if combinators > MAX_COMBINATOR_DEPTH {
            return Err(format!(
                "nests combinators (anyOf, oneOf, allOf, not, if/then/else) deeper than \
                 {MAX_COMBINATOR_DEPTH} levels at {at}"
            ));
        }
        let mut total = 1usize;
        match node {
            Value::Object(map) => {
                for (key, value) in map {
                    let path = format!("{at}/{key}");
                    if REFS.contains(&key.as_str()) {
                        total = total.saturating_add(self.reference(
                            value,
                            &path,
                            depth,
                            combinators,
                        )?);
                    } else {
                        let deeper = combinators + usize::from(COMBINATORS.contains(&key.as_str()));
                        total = total.saturating_add(self.cost(value, &path, depth + 1, deeper)?);
                    }
                    if total > MAX_EXPANDED_NODES {
                        return Ok(total);
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    total = total.saturating_add(self.cost(
                        item,
                        &format!("{at}/{i}"),
                        depth + 1,
                        combinators,
                    )?);
                    if total > MAX_EXPANDED_NODES {
                        return Ok(total);
                    }
                }
            }
            _ => {}
        }
        Ok(total)
    }

    /// The expanded cost of the schema a `$ref` names.
    fn reference(
        &mut self,
        target: &Value,
        at: &str,
        depth: usize,
        combinators: usize,
    ) -> Result<usize, String> {
        let Some(pointer) = target.as_str().and_then(|t| t.strip_prefix('#')) else {
            return Err(format!(
                "has a reference at {at} that is not local: only \"#\" and \"#/...\" references \
                 are accepted (Flowgate never fetches a schema)"
            ));
        };
        if let Some(cost) = self.expanded.get(pointer) {
            return Ok(*cost);
        }
        if self.expanding.iter().any(|p| p == pointer) {
            return Err(format!(
                "has a recursive reference at {at} (#{pointer}); recursive schemas are not accepted"
            ));
        }
        let Some(node) = self.root.pointer(pointer) else {
            return Err(format!(
                "has a reference at {at} to #{pointer}, which does not exist"
            ));
        };
        self.expanding.push(pointer.to_owned());
        let cost = self.cost(node, &format!("#{pointer}"), depth + 1, combinators);
        self.expanding.pop();
        let cost = cost?;
        self.expanded.insert(pointer.to_owned(), cost);
        Ok(cost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The probe's reference bomb itself is refused in tests/tests/suite/security.rs.
    #[test]
    fn expansion_is_counted_and_ordinary_schemas_pass() {
        let wide: serde_json::Map<String, Value> = (0..40)
            .map(|i| (format!("p{i}"), json!({"$ref": "#/$defs/big"})))
            .collect();
        let big: Vec<Value> = (0..300).map(|i| json!({"const": i})).collect();
        let fan_out = json!({"properties": wide, "$defs": {"big": {"anyOf": big}}});
        assert!(check(&fan_out).unwrap_err().contains("expands to"));
        let ordinary = json!({"type": "object", "required": ["amount"],
            "properties": {"amount": {"type": "integer", "minimum": 1},
                           "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}}},
            "$defs": {"tag": {"type": "string", "pattern": "^[a-z]+$"}}});
        assert!(check(&ordinary).is_ok());
    }

    #[test]
    fn recursion_remote_references_depth_and_size_are_refused() {
        let recursive = json!({"$defs": {"n": {"properties": {"next": {"$ref": "#/$defs/n"}}}},
            "$ref": "#/$defs/n"});
        assert!(check(&recursive).unwrap_err().contains("recursive"));
        assert!(
            check(&json!({"$ref": "https://example.com/s.json"}))
                .unwrap_err()
                .contains("not local")
        );
        assert!(
            check(&json!({"$ref": "#/nowhere"}))
                .unwrap_err()
                .contains("does not exist")
        );
        let mut nested = json!({"type": "integer"});
        for _ in 0..10 {
            nested = json!({"not": nested});
        }
        assert!(check(&nested).unwrap_err().contains("combinators"));
        let big = json!({"description": "x".repeat(MAX_SCHEMA_BYTES)});
        assert!(check(&big).unwrap_err().contains("bytes"));
    }
}
