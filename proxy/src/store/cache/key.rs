//! Cache keys: which request fields select an answer, hashed canonically, and
//! what the client's `Cache-Control` asks of the cache.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use axum::http::HeaderMap;
use axum::http::header::CACHE_CONTROL;
use serde::Serialize;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::shared::labels::Route;

/// The request fields that describe the caller, not the answer: every other
/// field is part of the key. A field the proxy does not know (a new API
/// parameter, a vendor extension) may change the answer, so it selects its
/// own entry: at worst a miss, never someone else's answer.
const CALLER_FIELDS: [&str; 4] = ["user", "metadata", "safety_identifier", "prompt_cache_key"];

/// Hashed ahead of the request so that a change to the key derivation can be
/// made incompatible with entries already sitting in a shared Redis.
const KEY_VERSION: &str = "switchyard-cache-key-v2";
const REDIS_KEY_PREFIX: &str = "switchyard:cache:";
/// SHA-256 (hex) of the route and the response-selecting request fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The entry's name in Redis.
    pub fn redis_key(&self) -> String {
        format!("{REDIS_KEY_PREFIX}{}", self.0)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key for a request body as the client sent it (before the proxy adds
/// anything such as `stream_options.include_usage`). Absent and `null` fields
/// are the same request; object keys are sorted at every depth so that the
/// client's JSON key order does not matter. Numbers are kept as written, so
/// `1` and `1.0` are different entries.
pub fn cache_key(route: Route, body: &Map<String, Value>) -> CacheKey {
    let selected: BTreeMap<&str, &Value> = body
        .iter()
        .filter(|(field, value)| !value.is_null() && !CALLER_FIELDS.contains(&field.as_str()))
        .map(|(field, value)| (field.as_str(), value))
        .collect();

    let mut hasher = Sha256::new();
    hasher.update(KEY_VERSION.as_bytes());
    hasher.update(b"\n");
    hasher.update(route.as_str().as_bytes());
    hasher.update(b"\n");
    write_canonical_json(&mut HashWriter(&mut hasher), &selected);
    CacheKey(hex::encode(hasher.finalize()))
}

/// Compact JSON, as serde_json writes it, with object keys sorted at every
/// depth: serde_json's `Map` is a `BTreeMap` unless some crate in the build
/// enables its `preserve_order` feature, and none does (`cargo tree -e features
/// -i serde_json`); `key_ignores_json_key_order_at_every_depth` fails if one
/// ever does. Backspace and form feed are written as `\u` escapes, as the keys
/// already in a shared Redis were derived.
fn write_canonical_json(out: impl io::Write, value: &impl Serialize) {
    let mut serializer = serde_json::Serializer::with_formatter(out, KeyFormatter);
    // Writing into a hasher cannot fail, nor can serializing JSON values.
    let _ = value.serialize(&mut serializer);
}

struct KeyFormatter;

impl Formatter for KeyFormatter {
    fn write_char_escape<W>(&mut self, writer: &mut W, char_escape: CharEscape) -> io::Result<()>
    where
        W: ?Sized + io::Write,
    {
        match char_escape {
            CharEscape::Backspace => writer.write_all(b"\\u0008"),
            CharEscape::FormFeed => writer.write_all(b"\\u000c"),
            other => CompactFormatter.write_char_escape(writer, other),
        }
    }
}

/// Feeds what serde_json writes straight into the hasher.
struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the client's `Cache-Control` asks of the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheDirectives {
    /// Skip the lookup; the fresh answer is still stored.
    pub no_cache: bool,
    /// Do not store the answer.
    pub no_store: bool,
}

impl CacheDirectives {
    /// Reads every `Cache-Control` header, each possibly a comma-separated list.
    /// Directive names are case-insensitive and may carry an argument
    /// (`no-cache="x"`), which does not narrow the directive here. Values that
    /// are not valid text are still scanned byte-wise rather than ignored, so a
    /// stray byte elsewhere in the header cannot cancel a `no-store`.
    pub fn from_headers(headers: &HeaderMap) -> CacheDirectives {
        let mut directives = CacheDirectives::default();
        for value in headers.get_all(CACHE_CONTROL) {
            for directive in value.as_bytes().split(|byte| *byte == b',') {
                let name = directive
                    .split(|byte| *byte == b'=')
                    .next()
                    .unwrap_or_default()
                    .trim_ascii();
                if name.eq_ignore_ascii_case(b"no-cache") {
                    directives.no_cache = true;
                } else if name.eq_ignore_ascii_case(b"no-store") {
                    directives.no_store = true;
                }
            }
        }
        directives
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::test_support::object;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn base_body() -> Map<String, Value> {
        object(json!({
            "model": "mock-chat",
            "messages": [{"role": "user", "content": "hello"}],
            "temperature": 0.5,
            "user": "alice",
            "metadata": {"trace": "1"},
        }))
    }

    fn key_with(field: &str, value: Value) -> CacheKey {
        let mut body = base_body();
        body.insert(field.to_owned(), value);
        cache_key(Route::ChatCompletions, &body)
    }

    fn key_without(field: &str) -> CacheKey {
        let mut body = base_body();
        body.remove(field);
        cache_key(Route::ChatCompletions, &body)
    }

    /// One test per field that changes the answer: two values of the field give
    /// two entries, and so does leaving the field out, while `null` is the same
    /// as absent.
    macro_rules! key_field_tests {
        ($($name:ident: $field:literal => $a:expr, $b:expr;)*) => {
            $(
                #[test]
                fn $name() {
                    let a = key_with($field, $a);
                    let b = key_with($field, $b);
                    assert_ne!(a, b, "{} must be part of the key", $field);
                    assert_ne!(a, key_without($field));
                    assert_eq!(key_with($field, Value::Null), key_without($field));
                }
            )*
        };
    }

    key_field_tests! {
        key_depends_on_model: "model" => json!("mock-a"), json!("mock-b");
        key_depends_on_messages: "messages" =>
            json!([{"role": "user", "content": "hi"}]), json!([{"role": "user", "content": "ho"}]);
        key_depends_on_input: "input" => json!("hi"), json!([{"role": "user", "content": "hi"}]);
        key_depends_on_instructions: "instructions" => json!("be brief"), json!("be verbose");
        key_depends_on_previous_response_id: "previous_response_id" => json!("resp_1"), json!("resp_2");
        key_depends_on_temperature: "temperature" => json!(0.2), json!(0.7);
        key_depends_on_top_p: "top_p" => json!(0.9), json!(1);
        key_depends_on_max_tokens: "max_tokens" => json!(10), json!(11);
        key_depends_on_max_completion_tokens: "max_completion_tokens" => json!(10), json!(11);
        key_depends_on_max_output_tokens: "max_output_tokens" => json!(10), json!(11);
        key_depends_on_tools: "tools" =>
            json!([{"type": "function", "function": {"name": "a"}}]),
            json!([{"type": "function", "function": {"name": "b"}}]);
        key_depends_on_tool_choice: "tool_choice" => json!("auto"), json!("none");
        key_depends_on_response_format: "response_format" =>
            json!({"type": "json_object"}), json!({"type": "text"});
        key_depends_on_text: "text" => json!({"format": {"type": "text"}}), json!({"format": {"type": "json_object"}});
        key_depends_on_seed: "seed" => json!(1), json!(2);
        key_depends_on_stop: "stop" => json!("\n"), json!(["\n", "END"]);
        key_depends_on_n: "n" => json!(1), json!(2);
        key_depends_on_stream: "stream" => json!(true), json!(false);
        key_depends_on_stream_options: "stream_options" =>
            json!({"include_usage": true}), json!({"include_usage": false});
        key_depends_on_logprobs: "logprobs" => json!(true), json!(false);
        key_depends_on_top_logprobs: "top_logprobs" => json!(2), json!(5);
        key_depends_on_reasoning: "reasoning" => json!({"effort": "low"}), json!({"effort": "high"});
        key_depends_on_reasoning_effort: "reasoning_effort" => json!("low"), json!("high");
        key_depends_on_store: "store" => json!(true), json!(false);
        key_depends_on_include: "include" =>
            json!(["message.output_text.logprobs"]), json!(["reasoning.encrypted_content"]);
        key_depends_on_presence_penalty: "presence_penalty" => json!(0.5), json!(1);
        key_depends_on_frequency_penalty: "frequency_penalty" => json!(0.5), json!(1);
        key_depends_on_logit_bias: "logit_bias" => json!({"50256": -100}), json!({"50256": 100});
        key_depends_on_parallel_tool_calls: "parallel_tool_calls" => json!(true), json!(false);
        key_depends_on_modalities: "modalities" => json!(["text"]), json!(["text", "audio"]);
        key_depends_on_audio: "audio" =>
            json!({"voice": "alloy", "format": "wav"}), json!({"voice": "echo", "format": "wav"});
        key_depends_on_prediction: "prediction" =>
            json!({"type": "content", "content": "a"}), json!({"type": "content", "content": "b"});
        key_depends_on_a_field_the_proxy_does_not_know: "unrelated_extension" => json!(1), json!(2);
    }

    #[test]
    fn caller_fields_do_not_change_the_key() {
        let reference = cache_key(Route::ChatCompletions, &base_body());
        for (field, value) in [
            ("user", json!("bob")),
            ("metadata", json!({"trace": "2"})),
            ("safety_identifier", json!("hashed-user")),
            ("prompt_cache_key", json!("tenant-7")),
        ] {
            assert_eq!(key_with(field, value), reference, "{field}");
            assert_eq!(key_without(field), reference, "{field}");
        }
    }

    #[test]
    fn key_depends_on_route() {
        let body = base_body();
        assert_ne!(
            cache_key(Route::ChatCompletions, &body),
            cache_key(Route::Responses, &body)
        );
    }

    #[test]
    fn key_is_a_sha256_hex_digest() {
        let key = cache_key(Route::Responses, &base_body());
        assert_eq!(key.as_str().len(), 64);
        assert!(key.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(key.redis_key(), format!("switchyard:cache:{key}"));
    }

    #[test]
    fn key_ignores_json_key_order_at_every_depth() {
        let a: Map<String, Value> = serde_json::from_str(
            r#"{"model": "m", "temperature": 1, "tools": [{"type": "function",
                "function": {"name": "f", "parameters": {"b": 1, "a": {"y": 2, "x": 1}}}}]}"#,
        )
        .unwrap();
        let b: Map<String, Value> = serde_json::from_str(
            r#"{"tools": [{"function": {"parameters": {"a": {"x": 1, "y": 2}, "b": 1},
                "name": "f"}, "type": "function"}], "temperature": 1, "model": "m"}"#,
        )
        .unwrap();
        assert_eq!(
            cache_key(Route::Responses, &a),
            cache_key(Route::Responses, &b)
        );
    }

    #[test]
    fn canonical_json_sorts_keys_and_round_trips() {
        let value =
            json!({"b": [1, {"d": null, "c": "x\"\\\n\u{1}\u{8}\u{c}é"}], "a": true, "á": 1.5});
        let mut out = Vec::new();
        write_canonical_json(&mut out, &value);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            r#"{"a":true,"b":[1,{"c":"x\"\\\n\u0001\u0008\u000cé","d":null}],"á":1.5}"#
        );
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), value);
    }

    #[test]
    fn key_digests_are_those_of_the_canonical_text() {
        // The text the key hashes: a change to it must come with a new version,
        // so that entries in a shared Redis made the old way are never served.
        let body = object(json!({"model": "m", "temperature": 1, "user": "u"}));
        let text = "switchyard-cache-key-v2\nchat_completions\n{\"model\":\"m\",\"temperature\":1}";
        assert_eq!(
            cache_key(Route::ChatCompletions, &body).as_str(),
            hex::encode(Sha256::digest(text.as_bytes()))
        );
    }

    fn directives(values: &[&str]) -> CacheDirectives {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(CACHE_CONTROL, HeaderValue::from_str(value).unwrap());
        }
        CacheDirectives::from_headers(&headers)
    }

    #[test]
    fn directives_are_parsed_from_cache_control() {
        assert_eq!(directives(&[]), CacheDirectives::default());
        assert_eq!(
            directives(&["no-cache"]),
            CacheDirectives {
                no_cache: true,
                no_store: false
            }
        );
        assert_eq!(
            directives(&["No-Store"]),
            CacheDirectives {
                no_cache: false,
                no_store: true
            }
        );
        let both = CacheDirectives {
            no_cache: true,
            no_store: true,
        };
        assert_eq!(directives(&["no-cache, no-store"]), both);
        assert_eq!(directives(&[" NO-STORE ,max-age=0,No-Cache"]), both);
        assert_eq!(directives(&["no-cache", "no-store"]), both);
        assert!(directives(&["no-cache=\"set-cookie\""]).no_cache);
        assert_eq!(
            directives(&["max-age=0, no-cachex, xno-store, private"]),
            CacheDirectives::default()
        );
    }

    #[test]
    fn directives_survive_non_text_header_bytes() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_bytes(b"no-store, x=\xff").unwrap(),
        );
        assert!(CacheDirectives::from_headers(&headers).no_store);
    }
}
