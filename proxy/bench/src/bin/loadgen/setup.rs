//! Reading the command line: targets, headers and the default request body.

use std::sync::Mutex;

use hyper::Uri;
use hyper::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::client::*;
use crate::plan::*;

pub(crate) fn parse_target(text: &str, path: &str) -> Result<Target, String> {
    let (name, url) = text
        .split_once('=')
        .ok_or_else(|| format!("--target {text:?}: expected NAME=URL"))?;
    let url = url.trim_end_matches('/');
    let parse = |path: &str| -> Result<Uri, String> {
        format!("{url}{path}")
            .parse()
            .map_err(|err| format!("--target {text:?}: {err}"))
    };
    let uri = parse(path)?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "--target {text:?}: only http:// URLs are supported"
        ));
    }
    Ok(Target {
        name: name.to_owned(),
        url: url.to_owned(),
        uri,
        chat_uri: parse(CHAT_PATH)?,
        responses_uri: parse(RESPONSES_PATH)?,
        recorder: Mutex::default(),
    })
}

pub(crate) fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("--header {text:?}: expected NAME: VALUE"))?;
    let name = HeaderName::try_from(name.trim()).map_err(|err| format!("--header: {err}"))?;
    let value = HeaderValue::try_from(value.trim()).map_err(|err| format!("--header: {err}"))?;
    Ok((name, value))
}

pub(crate) fn default_body(model: &str, stream: bool) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "How much time does a proxy add to a request?"},
        ],
        "max_tokens": 64,
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}
