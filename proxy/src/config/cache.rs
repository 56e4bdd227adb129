//! The `[cache]` table: which backend keeps cached answers, and for how long.

use std::fmt;

use serde::Deserialize;

use crate::shared::url::url_without_credentials;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackendKind {
    #[default]
    Memory,
    Redis,
    Off,
}

/// The `[cache]` table.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub backend: CacheBackendKind,
    pub redis_url: Option<String>,
    pub ttl_seconds: u64,
    /// Only the memory backend is bounded by count; Redis has its own eviction policy.
    pub max_entries: usize,
    /// The memory backend's byte budget (bodies and keys); beyond it the
    /// oldest answers go first, and one larger than it is not cached.
    pub max_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            backend: CacheBackendKind::Memory,
            redis_url: None,
            ttl_seconds: 300,
            max_entries: 10_000,
            max_bytes: 128 * 1024 * 1024,
        }
    }
}

// Written by hand because a Redis URL may carry a password, and configs get logged.
impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheConfig")
            .field("backend", &self.backend)
            .field(
                "redis_url",
                &self.redis_url.as_deref().map(url_without_credentials),
            )
            .field("ttl_seconds", &self.ttl_seconds)
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl CacheConfig {
    /// Checks what serde cannot; the message starts with the offending key so
    /// the config loader only has to prefix the file name.
    pub fn validate(&self) -> Result<(), String> {
        if self.backend != CacheBackendKind::Off && self.ttl_seconds == 0 {
            return Err("cache.ttl_seconds: must be greater than 0".into());
        }
        if self.backend == CacheBackendKind::Memory && self.max_entries == 0 {
            return Err("cache.max_entries: must be greater than 0".into());
        }
        if self.backend == CacheBackendKind::Memory && self.max_bytes == 0 {
            return Err("cache.max_bytes: must be greater than 0".into());
        }
        if self.backend == CacheBackendKind::Redis {
            let url = self
                .redis_url
                .as_deref()
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .ok_or_else(|| {
                    "cache.redis_url: required when cache.backend = \"redis\"".to_owned()
                })?;
            // Only parses: the server may legitimately be down while the proxy starts.
            redis::Client::open(url)
                .map_err(|err| format!("cache.redis_url: invalid Redis URL: {err}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_parsing() {
        let config: CacheConfig = toml::from_str("").unwrap();
        assert_eq!(config.backend, CacheBackendKind::Memory);
        assert_eq!(config.redis_url, None);
        assert_eq!(config.ttl_seconds, 300);
        assert_eq!(config.max_entries, 10_000);
        assert_eq!(config.max_bytes, 128 << 20);
        let config: CacheConfig = toml::from_str("max_bytes = 4096").unwrap();
        assert_eq!(config.max_bytes, 4096);
        let zero = CacheConfig {
            max_bytes: 0,
            ..CacheConfig::default()
        };
        assert_eq!(
            zero.validate(),
            Err("cache.max_bytes: must be greater than 0".into())
        );

        let config: CacheConfig = toml::from_str(
            "backend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/0\"\nttl_seconds = 5",
        )
        .unwrap();
        assert_eq!(config.backend, CacheBackendKind::Redis);
        assert_eq!(config.ttl_seconds, 5);
        assert_eq!(config.validate(), Ok(()));

        assert!(toml::from_str::<CacheConfig>("backend = \"memcached\"").is_err());
        assert!(toml::from_str::<CacheConfig>("ttl = 5").is_err());
    }

    #[test]
    fn config_validation_names_the_key() {
        let redis = |url: Option<&str>| CacheConfig {
            backend: CacheBackendKind::Redis,
            redis_url: url.map(str::to_owned),
            ..CacheConfig::default()
        };
        assert_eq!(
            redis(None).validate(),
            Err("cache.redis_url: required when cache.backend = \"redis\"".into())
        );
        assert!(redis(Some(" ")).validate().is_err());
        let err = redis(Some("http://nope")).validate().unwrap_err();
        assert!(err.starts_with("cache.redis_url: "), "{err}");

        let zero_ttl = CacheConfig {
            ttl_seconds: 0,
            ..CacheConfig::default()
        };
        assert_eq!(
            zero_ttl.validate(),
            Err("cache.ttl_seconds: must be greater than 0".into())
        );
        let zero_entries = CacheConfig {
            max_entries: 0,
            ..CacheConfig::default()
        };
        assert_eq!(
            zero_entries.validate(),
            Err("cache.max_entries: must be greater than 0".into())
        );
        let off = CacheConfig {
            backend: CacheBackendKind::Off,
            ttl_seconds: 0,
            max_entries: 0,
            ..CacheConfig::default()
        };
        assert_eq!(off.validate(), Ok(()));
    }

    #[test]
    fn config_debug_hides_the_redis_password() {
        let config = CacheConfig {
            backend: CacheBackendKind::Redis,
            redis_url: Some("redis://user:hunter2@cache.internal:6379/0".into()),
            ..CacheConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://cache.internal:6379/0"), "{shown}");
        assert_eq!(
            url_without_credentials("redis://127.0.0.1/0"),
            "redis://127.0.0.1/0"
        );
    }
}
