//! Builders the crate's unit tests share: a header map from pairs, and a JSON
//! object from `json!`.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

/// A header map holding each pair, in order (repeated names are appended).
pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// The map inside a `json!` object (a test's input is always one).
pub fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}
