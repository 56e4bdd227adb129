//! The configuration file: loading and validating the TOML. Every error starts with the
//! file and the key it concerns, so an operator can fix it without guessing.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::config::auth::{AuthConfig, Authenticator};
use crate::config::cache::CacheConfig;
use crate::config::ledger::{LedgerConfig, Prices};
use crate::config::slo::SloConfig;
use crate::config::tables::{
    HealthConfig, ModelConfig, RetryConfig, Secret, ServerConfig, UpstreamConfig,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// Dotted key path such as `models[1].upstreams`; empty when the problem is
    /// not tied to one key (unreadable file, TOML syntax error).
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub health: HealthConfig,

    // Each module's own table, typed and checked by that module.
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub ledger: LedgerConfig,
    #[serde(default)]
    pub prices: Prices,
    #[serde(default)]
    pub slo: SloConfig,

    /// The tenant keys, resolved (environment included) at load time like the
    /// upstream keys, so a missing variable is a config error.
    #[serde(skip)]
    pub authenticator: Option<Arc<Authenticator>>,
    /// The config file as named in messages.
    #[serde(skip)]
    pub file: String,

    /// Directory of the config file: relative paths in it (the ledger's) are
    /// resolved against it, not against the working directory.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            file: file.clone(),
            key: String::new(),
            message: format!("cannot read config file: {err}"),
        })?;
        Config::parse(&text, &file, |name| std::env::var(name).ok())
    }

    /// `file` is only used in messages; `env` resolves `api_key_env` (a parameter
    /// so tests do not have to mutate the process environment).
    pub fn parse(
        text: &str,
        file: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = deserialize(text, file)?;
        config.validate(file, env)?;
        config.file = file.to_owned();
        config.base_dir = Path::new(file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Ok(config)
    }

    fn validate(
        &mut self,
        file: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let fail = |key: String, message: String| ConfigError {
            file: file.to_owned(),
            key,
            message,
        };

        if self.server.bind.trim().is_empty() {
            return Err(fail("server.bind".into(), "must not be empty".into()));
        }
        for (field, value) in [
            ("max_body_bytes", self.server.max_body_bytes as u64),
            (
                "request_body_timeout_ms",
                self.server.request_body_timeout_ms,
            ),
            ("header_read_timeout_ms", self.server.header_read_timeout_ms),
            ("max_connections", self.server.max_connections as u64),
        ] {
            if value == 0 {
                return Err(fail(
                    format!("server.{field}"),
                    "must be greater than 0".into(),
                ));
            }
        }

        for name in &self.server.forward_headers {
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(fail(
                    "server.forward_headers".into(),
                    format!("{name:?} is not a header name"),
                ));
            }
        }

        let mut upstream_names = HashSet::new();
        for (index, upstream) in self.upstreams.iter_mut().enumerate() {
            let key = |field: &str| format!("upstreams[{index}].{field}");
            if upstream.name.is_empty() {
                return Err(fail(key("name"), "must not be empty".into()));
            }
            if !upstream_names.insert(upstream.name.clone()) {
                return Err(fail(
                    key("name"),
                    format!("duplicate upstream name \"{}\"", upstream.name),
                ));
            }
            validate_base_url(&upstream.base_url)
                .map_err(|message| fail(key("base_url"), message))?;
            for (field, value) in [
                ("connect_timeout_ms", Some(upstream.connect_timeout_ms)),
                ("timeout_ms", Some(upstream.timeout_ms)),
                ("idle_timeout_ms", upstream.idle_timeout_ms),
                ("total_timeout_ms", upstream.total_timeout_ms),
                ("weight", Some(u64::from(upstream.weight))),
                ("max_body_bytes", Some(upstream.max_body_bytes as u64)),
                ("max_event_bytes", Some(upstream.max_event_bytes as u64)),
            ] {
                if value == Some(0) {
                    return Err(fail(key(field), "must be greater than 0".into()));
                }
            }
            upstream.resolved_api_key = match (&upstream.api_key, &upstream.api_key_env) {
                (Some(_), Some(_)) => {
                    return Err(fail(
                        key("api_key_env"),
                        "set either api_key or api_key_env, not both".into(),
                    ));
                }
                (Some(key_value), None) => Some(key_value.clone()),
                // A missing variable is an error rather than "no key": silently
                // forwarding the client's own Authorization instead would surprise.
                (None, Some(variable)) => match env(variable) {
                    Some(value) if !value.is_empty() => Some(Secret::new(value)),
                    _ => {
                        return Err(fail(
                            key("api_key_env"),
                            format!("environment variable \"{variable}\" is not set or empty"),
                        ));
                    }
                },
                (None, None) => None,
            };
            if let Some(secret) = &upstream.resolved_api_key
                && !is_valid_token(secret.expose())
            {
                let field = if upstream.api_key.is_some() {
                    "api_key"
                } else {
                    "api_key_env"
                };
                return Err(fail(
                    key(field),
                    "key contains whitespace or characters not allowed in an HTTP header".into(),
                ));
            }
        }

        let mut model_names = HashSet::new();
        for (index, model) in self.models.iter().enumerate() {
            let key = |field: &str| format!("models[{index}].{field}");
            if model.name.is_empty() {
                return Err(fail(key("name"), "must not be empty".into()));
            }
            if !model_names.insert(model.name.as_str()) {
                return Err(fail(
                    key("name"),
                    format!("duplicate model name \"{}\"", model.name),
                ));
            }
            if model.upstreams.is_empty() {
                return Err(fail(
                    key("upstreams"),
                    "must list at least one upstream".into(),
                ));
            }
            if let Some(unknown) = model
                .upstreams
                .iter()
                .find(|name| !upstream_names.contains(name.as_str()))
            {
                return Err(fail(
                    key("upstreams"),
                    format!("unknown upstream \"{unknown}\""),
                ));
            }
            if model.upstream_model.as_deref() == Some("") {
                return Err(fail(key("upstream_model"), "must not be empty".into()));
            }
        }

        // A second pass: fallbacks may name models defined further down.
        for (index, model) in self.models.iter().enumerate() {
            let key = format!("models[{index}].fallback_models");
            let mut seen = HashSet::new();
            for fallback in &model.fallback_models {
                if *fallback == model.name {
                    return Err(fail(
                        key,
                        format!("model \"{fallback}\" cannot fall back to itself"),
                    ));
                }
                if !model_names.contains(fallback.as_str()) {
                    return Err(fail(key, format!("unknown model \"{fallback}\"")));
                }
                if !seen.insert(fallback.as_str()) {
                    return Err(fail(key, format!("model \"{fallback}\" is listed twice")));
                }
            }
        }

        let retry = &self.retry;
        for (field, value) in [
            ("max_attempts", u64::from(retry.max_attempts)),
            (
                "attempts_per_upstream",
                u64::from(retry.attempts_per_upstream),
            ),
            ("deadline_ms", retry.deadline_ms),
        ] {
            if value == 0 {
                return Err(fail(
                    format!("retry.{field}"),
                    "must be greater than 0".into(),
                ));
            }
        }
        if retry.max_backoff_ms < retry.base_backoff_ms {
            return Err(fail(
                "retry.max_backoff_ms".into(),
                "must not be less than retry.base_backoff_ms".into(),
            ));
        }
        if self.health.failure_threshold == 0 {
            return Err(fail(
                "health.failure_threshold".into(),
                "must be greater than 0".into(),
            ));
        }
        self.cache
            .validate()
            .map_err(|problem| keyed(&fail, problem))?;
        let authenticator = Authenticator::from_config_with_env(&self.auth, &env)
            .map_err(|problem| keyed(&fail, problem))?;
        self.authenticator = Some(Arc::new(authenticator));
        Ok(())
    }
}

/// A module's own validation message, `"table.key: what is wrong"`, as a
/// `ConfigError` naming that key.
fn keyed(fail: &impl Fn(String, String) -> ConfigError, problem: String) -> ConfigError {
    match problem.split_once(": ") {
        Some((key, message)) if !key.contains(' ') => fail(key.to_owned(), message.to_owned()),
        _ => fail(String::new(), problem),
    }
}

fn deserialize(text: &str, file: &str) -> Result<Config, ConfigError> {
    let syntax_error = |err: toml::de::Error| ConfigError {
        file: file.to_owned(),
        key: String::new(),
        message: describe_toml_error(&err, text),
    };
    let deserializer = toml::Deserializer::parse(text).map_err(syntax_error)?;
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        ConfigError {
            file: file.to_owned(),
            // serde_path_to_error renders the document root as "."
            key: if path == "." { String::new() } else { path },
            message: describe_toml_error(err.inner(), text),
        }
    })
}

/// The toml crate's own Display is a multi-line source excerpt; a single line
/// with the position reads better in a log.
fn describe_toml_error(err: &toml::de::Error, text: &str) -> String {
    let message = err.message().trim_end();
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{message} (line {line}, column {column})")
        }
        None => message.to_owned(),
    }
}

fn validate_base_url(base_url: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(base_url).map_err(|err| format!("invalid URL: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme must be http or https, not \"{}\"",
            url.scheme()
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not contain a query or fragment".into());
    }
    Ok(())
}

fn is_valid_token(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tables::Strategy;

    const FILE: &str = "config/proxy.toml";

    const VALID: &str = r#"
[server]
port = 0

[[upstreams]]
name = "mock-a"
base_url = "http://127.0.0.1:9000/mock-a/v1"
api_key_env = "MOCK_A_KEY"

[[upstreams]]
name = "mock-b"
base_url = "http://127.0.0.1:9000/mock-b/v1"
responses = true
idle_timeout_ms = 500

[[models]]
name = "mock-chat"
upstreams = ["mock-a"]
upstream_model = "real-model"
"#;

    fn env(name: &str) -> Option<String> {
        (name == "MOCK_A_KEY").then(|| "sk-test".to_owned())
    }

    fn parse_err(text: &str) -> String {
        Config::parse(text, FILE, env).unwrap_err().to_string()
    }

    #[test]
    fn valid_config_fills_defaults_and_resolves_keys() {
        let config = Config::parse(VALID, FILE, env).unwrap();
        assert_eq!(config.server.bind, "127.0.0.1");
        assert_eq!(config.server.port, 0);
        assert_eq!(config.server.max_body_bytes, 4 * 1024 * 1024);
        assert_eq!(config.server.response_store_capacity, 10_000);
        assert_eq!(config.server.max_connections, 10_000);
        assert!(!config.server.http2);
        assert_eq!(config.upstreams[0].timeout_ms, 30_000);
        assert_eq!(config.upstreams[0].connect_timeout_ms, 2_000);
        assert_eq!(config.upstreams[0].idle_timeout_ms, None);
        assert_eq!(config.upstreams[1].idle_timeout_ms, Some(500));
        assert_eq!(
            config.upstreams[0]
                .resolved_api_key
                .as_ref()
                .map(Secret::expose),
            Some("sk-test")
        );
        assert!(config.upstreams[1].resolved_api_key.is_none());
        assert_eq!(
            config.models[0].upstream_model.as_deref(),
            Some("real-model")
        );
    }

    #[test]
    fn unknown_upstream_names_file_and_key() {
        let text = format!("{VALID}\n[[models]]\nname = \"other\"\nupstreams = [\"nope\"]\n");
        assert_eq!(
            parse_err(&text),
            r#"config/proxy.toml: models[1].upstreams: unknown upstream "nope""#
        );
    }

    #[test]
    fn unknown_key_is_rejected_and_named() {
        let err = parse_err(&VALID.replace("port = 0", "port = 0\nprot = 1"));
        assert!(
            err.starts_with("config/proxy.toml: server.prot: unknown field `prot`"),
            "{err}"
        );
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn unknown_key_in_array_table_names_the_index() {
        let err = parse_err(&VALID.replace("responses = true", "responses = true\nretries = 3"));
        assert!(
            err.starts_with("config/proxy.toml: upstreams[1].retries: unknown field `retries`"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = parse_err(&VALID.replace("port = 0", "port = \"eighty\""));
        assert!(
            err.starts_with("config/proxy.toml: server.port: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn missing_required_key_names_its_table() {
        let err = parse_err(&VALID.replace("base_url = \"http://127.0.0.1:9000/mock-b/v1\"", ""));
        assert!(
            err.starts_with("config/proxy.toml: upstreams[1]: missing field `base_url`"),
            "{err}"
        );
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let err = parse_err("[server\nport = 1\n");
        assert!(err.starts_with("config/proxy.toml: "), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let cases = [
            (
                VALID.replace("name = \"mock-b\"", "name = \"mock-a\""),
                "upstreams[1].name: duplicate upstream name \"mock-a\"",
            ),
            (
                VALID.replace("http://127.0.0.1:9000/mock-b/v1", "ftp://x/v1"),
                "upstreams[1].base_url: scheme must be http or https",
            ),
            (
                VALID.replace("idle_timeout_ms = 500", "idle_timeout_ms = 0"),
                "upstreams[1].idle_timeout_ms: must be greater than 0",
            ),
            (
                VALID.replace("MOCK_A_KEY", "UNSET_KEY"),
                "upstreams[0].api_key_env: environment variable \"UNSET_KEY\" is not set",
            ),
            (
                VALID.replace(
                    "api_key_env = \"MOCK_A_KEY\"",
                    "api_key_env = \"MOCK_A_KEY\"\napi_key = \"k\"",
                ),
                "upstreams[0].api_key_env: set either api_key or api_key_env",
            ),
            (
                VALID.replace("upstreams = [\"mock-a\"]", "upstreams = []"),
                "models[0].upstreams: must list at least one upstream",
            ),
            (
                VALID.replace("port = 0", "port = 0\nmax_body_bytes = 0"),
                "server.max_body_bytes: must be greater than 0",
            ),
            (
                VALID.replace("port = 0", "port = 0\nrequest_body_timeout_ms = 0"),
                "server.request_body_timeout_ms: must be greater than 0",
            ),
            (
                VALID.replace("port = 0", "port = 0\nheader_read_timeout_ms = 0"),
                "server.header_read_timeout_ms: must be greater than 0",
            ),
            (
                VALID.replace("port = 0", "port = 0\nmax_connections = 0"),
                "server.max_connections: must be greater than 0",
            ),
            (
                VALID.replace("port = 0", "port = 0\nforward_headers = [\"a b\"]"),
                "server.forward_headers: \"a b\" is not a header name",
            ),
        ];
        for (text, expected) in cases {
            let err = parse_err(&text);
            assert!(err.starts_with(&format!("{FILE}: {expected}")), "{err}");
        }
    }

    #[test]
    fn gateway_defaults_match_the_contract() {
        let config = Config::parse(VALID, FILE, env).unwrap();
        let retry = &config.retry;
        assert_eq!(
            (
                retry.max_attempts,
                retry.attempts_per_upstream,
                retry.base_backoff_ms,
                retry.max_backoff_ms,
                retry.respect_retry_after,
                retry.max_retry_after_ms,
                retry.deadline_ms
            ),
            (3, 1, 50, 2_000, true, 5_000, 30_000)
        );
        assert_eq!(
            (config.health.failure_threshold, config.health.cooldown_ms),
            (3, 5_000)
        );
        let upstream = &config.upstreams[0];
        assert_eq!((upstream.weight, upstream.total_timeout_ms), (1, None));
        assert_eq!(config.models[0].strategy, Strategy::RoundRobin);
        assert!(config.models[0].fallback_models.is_empty());
        assert_eq!(config.base_dir, Path::new("config"));
    }

    #[test]
    fn gateway_keys_are_read() {
        let text = VALID.replace(
            "idle_timeout_ms = 500",
            "weight = 3\ntotal_timeout_ms = 900",
        ) + "strategy = \"least_in_flight\"\nfallback_models = [\"other\"]\n"
            + "[[models]]\nname = \"other\"\nupstreams = [\"mock-b\"]\nstrategy = \"weighted\"\n"
            + "[retry]\nmax_attempts = 5\nrespect_retry_after = false\n"
            + "[health]\ncooldown_ms = 10\n";
        let config = Config::parse(&text, FILE, env).unwrap();
        assert_eq!(config.upstreams[1].weight, 3);
        assert_eq!(config.upstreams[1].total_timeout_ms, Some(900));
        assert_eq!(config.models[0].strategy, Strategy::LeastInFlight);
        assert_eq!(config.models[0].fallback_models, ["other"]);
        assert_eq!(config.models[1].strategy, Strategy::Weighted);
        assert_eq!(config.retry.max_attempts, 5);
        assert_eq!(config.retry.attempts_per_upstream, 1);
        assert!(!config.retry.respect_retry_after);
        assert_eq!(config.health.cooldown_ms, 10);
        assert_eq!(config.health.failure_threshold, 3);
    }

    #[test]
    fn response_store_bytes_has_a_default_and_is_read() {
        let config = Config::parse(VALID, FILE, env).unwrap();
        assert_eq!(config.server.response_store_bytes, 64 << 20);
        let text = VALID.replace("port = 0", "port = 0\nresponse_store_bytes = 4096");
        let config = Config::parse(&text, FILE, env).unwrap();
        assert_eq!(config.server.response_store_bytes, 4096);
    }

    #[test]
    fn upstream_body_limits_have_defaults_and_are_read() {
        let config = Config::parse(VALID, FILE, env).unwrap();
        let limits = |u: &UpstreamConfig| (u.max_body_bytes, u.max_event_bytes);
        assert_eq!(limits(&config.upstreams[0]), (32 << 20, 4 << 20));
        let text = VALID.replace(
            "idle_timeout_ms = 500",
            "max_body_bytes = 100\nmax_event_bytes = 10",
        );
        let config = Config::parse(&text, FILE, env).unwrap();
        assert_eq!(limits(&config.upstreams[1]), (100, 10));
        for field in ["max_body_bytes", "max_event_bytes"] {
            let text = VALID.replace("idle_timeout_ms = 500", &format!("{field} = 0"));
            let err = Config::parse(&text, FILE, env).unwrap_err().to_string();
            assert!(
                err.contains(&format!("upstreams[1].{field}: must be greater than 0")),
                "{err}"
            );
        }
    }

    #[test]
    fn gateway_errors_name_the_key() {
        let with_model = |extra: &str| format!("{VALID}{extra}\n");
        let cases = [
            (
                with_model("fallback_models = [\"mock-chat\"]"),
                "models[0].fallback_models: model \"mock-chat\" cannot fall back to itself",
            ),
            (
                with_model("fallback_models = [\"ghost\"]"),
                "models[0].fallback_models: unknown model \"ghost\"",
            ),
            (
                with_model("strategy = \"random\""),
                "models[0].strategy: unknown variant `random`",
            ),
            (
                VALID.replace("idle_timeout_ms = 500", "weight = 0"),
                "upstreams[1].weight: must be greater than 0",
            ),
            (
                VALID.replace("idle_timeout_ms = 500", "total_timeout_ms = 0"),
                "upstreams[1].total_timeout_ms: must be greater than 0",
            ),
            (
                with_model("[retry]\nmax_attempts = 0"),
                "retry.max_attempts: must be greater than 0",
            ),
            (
                with_model("[retry]\nbase_backoff_ms = 100\nmax_backoff_ms = 10"),
                "retry.max_backoff_ms: must not be less than retry.base_backoff_ms",
            ),
            (
                with_model("[retry]\nretries = 2"),
                "retry.retries: unknown field `retries`",
            ),
            (
                with_model("[health]\nfailure_threshold = 0"),
                "health.failure_threshold: must be greater than 0",
            ),
        ];
        for (text, expected) in cases {
            let err = parse_err(&text);
            assert!(err.starts_with(&format!("{FILE}: {expected}")), "{err}");
        }
    }

    #[test]
    fn api_key_never_appears_in_debug_output_or_errors() {
        let text = VALID.replace(
            "api_key_env = \"MOCK_A_KEY\"",
            "api_key = \"sk-secret value\"",
        );
        let err = parse_err(&text);
        assert!(
            err.starts_with("config/proxy.toml: upstreams[0].api_key:"),
            "{err}"
        );
        assert!(!err.contains("sk-secret"), "{err}");

        let config =
            Config::parse(&VALID.replace("MOCK_A_KEY\"", "MOCK_A_KEY\"\n"), FILE, env).unwrap();
        assert!(!format!("{config:?}").contains("sk-test"));
    }

    #[test]
    fn unreadable_file_is_reported_with_its_path() {
        let err = Config::load(Path::new("/nonexistent/switchyard.toml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/switchyard.toml: cannot read config file")
        );
    }
}
