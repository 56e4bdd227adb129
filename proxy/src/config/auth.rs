//! The `[auth]` table and the tenant API keys it resolves to: who is calling. Keys are resolved once at load time, kept
//! only as SHA-256 digests, compared in constant time and never printed.

use std::collections::HashMap;
use std::fmt;

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::shared::caller::{ADMIN, ANONYMOUS, Caller};
use crate::shared::error::error_body;

/// The `[auth]` table.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub admin_key: Option<String>,
    pub admin_key_env: Option<String>,
    pub keys: Vec<TenantKey>,
}

/// One `[[auth.keys]]` entry.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantKey {
    pub tenant: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub key_env: Option<String>,
}

// Hand-written so that printing the configuration (e.g. `{config:?}`) can never
// leak a literal key; variable names are not secret and help debugging.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("admin_key", &self.admin_key.as_ref().map(|_| Redacted))
            .field("admin_key_env", &self.admin_key_env)
            .field("keys", &self.keys)
            .finish()
    }
}

impl fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantKey")
            .field("tenant", &self.tenant)
            .field("key", &self.key.as_ref().map(|_| Redacted))
            .field("key_env", &self.key_env)
            .finish()
    }
}

struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a request was refused; every variant is a 401 `invalid_api_key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    )]
    Missing,
    #[error("The Authorization header must use Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")]
    Malformed,
    // The presented key is deliberately not echoed, not even partially.
    #[error("Incorrect API key provided.")]
    Invalid,
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    /// The OpenAI error body, the same shape `ApiError` renders.
    pub fn body(&self) -> Value {
        error_body(
            &self.to_string(),
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        )
    }
}

type KeyDigest = [u8; 32];

pub struct Authenticator {
    admin: Option<KeyDigest>,
    tenants: Vec<(String, KeyDigest)>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenants: Vec<&str> = self.tenants.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Authenticator")
            .field("admin_key", &self.admin.is_some())
            .field("tenants", &tenants)
            .finish()
    }
}

impl Authenticator {
    /// Resolves `*_env` keys from the process environment.
    pub fn from_config(config: &AuthConfig) -> Result<Authenticator, String> {
        Authenticator::from_config_with_env(config, |name| std::env::var(name).ok())
    }

    /// `env` resolves `*_env` variables, as in `Config::parse`, so tests need not
    /// touch the process environment. Errors read `auth.<key>: <problem>`.
    pub fn from_config_with_env(
        config: &AuthConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Authenticator, String> {
        let admin = resolve_key(
            "auth",
            ("admin_key", config.admin_key.as_deref()),
            ("admin_key_env", config.admin_key_env.as_deref()),
            &env,
        )?
        .map(|key| digest(&key));

        // Where each digest came from, to name the clash without showing the key.
        let mut owners: HashMap<KeyDigest, String> = HashMap::new();
        if let Some(admin) = admin {
            owners.insert(admin, "auth.admin_key".to_owned());
        }
        let mut tenants: Vec<(String, KeyDigest)> = Vec::with_capacity(config.keys.len());
        for (index, entry) in config.keys.iter().enumerate() {
            let prefix = format!("auth.keys[{index}]");
            if entry.tenant.is_empty() {
                return Err(format!("{prefix}.tenant: must not be empty"));
            }
            // These names already mean "no auth" and "the admin key" in the ledger.
            if entry.tenant == ANONYMOUS || entry.tenant == ADMIN {
                return Err(format!("{prefix}.tenant: \"{}\" is reserved", entry.tenant));
            }
            if tenants.iter().any(|(name, _)| *name == entry.tenant) {
                return Err(format!(
                    "{prefix}.tenant: duplicate tenant \"{}\"",
                    entry.tenant
                ));
            }
            let key = resolve_key(
                &prefix,
                ("key", entry.key.as_deref()),
                ("key_env", entry.key_env.as_deref()),
                &env,
            )?
            .ok_or_else(|| format!("{prefix}: set key or key_env"))?;
            let key_digest = digest(&key);
            let field = if entry.key.is_some() {
                "key"
            } else {
                "key_env"
            };
            if let Some(owner) = owners.get(&key_digest) {
                return Err(format!("{prefix}.{field}: same key as {owner}"));
            }
            owners.insert(key_digest, prefix);
            tenants.push((entry.tenant.clone(), key_digest));
        }
        Ok(Authenticator { admin, tenants })
    }

    /// `authorization` is the raw `Authorization` header, if any. With no key
    /// configured at all, auth is off and everyone is `Anonymous`.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        if self.admin.is_none() && self.tenants.is_empty() {
            return Ok(Caller::Anonymous);
        }
        let presented = bearer_token(authorization.ok_or(AuthError::Missing)?)?;
        // Comparing digests makes every comparison the same length, so not even
        // the key's length leaks; every key is compared, so neither does which
        // one matched. 0 = no match, 1 = admin, i + 2 = tenant i.
        let presented = digest(presented);
        let mut matched = 0u64;
        if let Some(admin) = &self.admin {
            matched.conditional_assign(&1, admin.ct_eq(&presented));
        }
        for (index, (_, key)) in self.tenants.iter().enumerate() {
            matched.conditional_assign(&(index as u64 + 2), key.ct_eq(&presented));
        }
        match matched {
            0 => Err(AuthError::Invalid),
            1 => Ok(Caller::Admin),
            tenant => usize::try_from(tenant - 2)
                .ok()
                .and_then(|index| self.tenants.get(index))
                .map(|(name, _)| Caller::Tenant(name.clone()))
                .ok_or(AuthError::Invalid),
        }
    }
}

/// `Bearer <token>`; the scheme is case-insensitive (RFC 7235).
fn bearer_token(header: &str) -> Result<&str, AuthError> {
    let header = header.trim();
    if header.is_empty() {
        return Err(AuthError::Missing);
    }
    let (scheme, token) = header
        .split_once(|c: char| c.is_ascii_whitespace())
        .ok_or(AuthError::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// One key given either literally or through an environment variable.
fn resolve_key(
    prefix: &str,
    (literal_field, literal): (&str, Option<&str>),
    (env_field, variable): (&str, Option<&str>),
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    let (field, key) = match (literal, variable) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "{prefix}.{env_field}: set either {literal_field} or {env_field}, not both"
            ));
        }
        (Some(key), None) => (literal_field, key.to_owned()),
        (None, Some(variable)) => match env(variable) {
            Some(value) if !value.is_empty() => (env_field, value),
            _ => {
                return Err(format!(
                    "{prefix}.{env_field}: environment variable \"{variable}\" is not set or empty"
                ));
            }
        },
        (None, None) => return Ok(None),
    };
    if key.is_empty() {
        return Err(format!("{prefix}.{field}: must not be empty"));
    }
    // A key a client cannot send as a Bearer token would lock its tenant out.
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{prefix}.{field}: key contains whitespace or characters not allowed in an HTTP header"
        ));
    }
    Ok(Some(key))
}

fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, key: Option<&str>, key_env: Option<&str>) -> TenantKey {
        TenantKey {
            tenant: name.to_owned(),
            key: key.map(str::to_owned),
            key_env: key_env.map(str::to_owned),
        }
    }

    fn config() -> AuthConfig {
        AuthConfig {
            admin_key: None,
            admin_key_env: Some("ADMIN_KEY".into()),
            keys: vec![
                tenant("acme", Some("sk-acme-literal"), None),
                tenant("globex", None, Some("GLOBEX_KEY")),
            ],
        }
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "ADMIN_KEY" => Some("sk-admin-from-env".into()),
            "GLOBEX_KEY" => Some("sk-globex-from-env".into()),
            "EMPTY_KEY" => Some(String::new()),
            _ => None,
        }
    }

    fn authenticator() -> Authenticator {
        Authenticator::from_config_with_env(&config(), env).unwrap()
    }

    fn load_err(config: &AuthConfig) -> String {
        Authenticator::from_config_with_env(config, env).unwrap_err()
    }

    #[test]
    fn authenticator_can_be_shared_across_tasks() {
        fn shared<T: Send + Sync>() {}
        shared::<Authenticator>();
    }

    #[test]
    fn keys_identify_tenants_and_admin() {
        let auth = authenticator();
        assert_eq!(
            auth.authenticate(Some("Bearer sk-acme-literal")),
            Ok(Caller::Tenant("acme".into()))
        );
        assert_eq!(
            auth.authenticate(Some("Bearer sk-globex-from-env")),
            Ok(Caller::Tenant("globex".into()))
        );
        assert_eq!(
            auth.authenticate(Some("Bearer sk-admin-from-env")),
            Ok(Caller::Admin)
        );
        // Scheme case and surrounding whitespace do not matter.
        assert_eq!(
            auth.authenticate(Some("  bearer   sk-acme-literal ")),
            Ok(Caller::Tenant("acme".into()))
        );
    }

    #[test]
    fn missing_unknown_and_malformed_headers_are_refused() {
        let auth = authenticator();
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
        assert_eq!(auth.authenticate(Some("  ")), Err(AuthError::Missing));
        assert_eq!(
            auth.authenticate(Some("Bearer sk-nope")),
            Err(AuthError::Invalid)
        );
        // A prefix or extension of a real key is a different key.
        assert_eq!(
            auth.authenticate(Some("Bearer sk-acme-litera")),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.authenticate(Some("Bearer sk-acme-literalx")),
            Err(AuthError::Invalid)
        );
        for malformed in [
            "sk-acme-literal",
            "Basic sk-acme-literal",
            "Bearer",
            "Bearer   ",
        ] {
            assert_eq!(
                auth.authenticate(Some(malformed)),
                Err(AuthError::Malformed),
                "{malformed}"
            );
        }
    }

    #[test]
    fn without_keys_everyone_is_anonymous() {
        let auth = Authenticator::from_config(&AuthConfig::default()).unwrap();
        for header in [None, Some(""), Some("Bearer anything"), Some("garbage")] {
            assert_eq!(auth.authenticate(header), Ok(Caller::Anonymous));
        }
    }

    #[test]
    fn an_admin_key_alone_turns_auth_on() {
        let config = AuthConfig {
            admin_key: Some("sk-root".into()),
            ..AuthConfig::default()
        };
        let auth = Authenticator::from_config(&config).unwrap();
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
        assert_eq!(auth.authenticate(Some("Bearer sk-root")), Ok(Caller::Admin));
    }

    #[test]
    fn tenant_names_for_the_ledger() {
        assert_eq!(Caller::Anonymous.tenant_name(), "anonymous");
        assert_eq!(Caller::Tenant("acme".into()).tenant_name(), "acme");
        assert_eq!(Caller::Admin.tenant_name(), "admin");
    }

    #[test]
    fn errors_render_as_openai_401() {
        for error in [AuthError::Missing, AuthError::Malformed, AuthError::Invalid] {
            assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
            let body = error.body();
            assert_eq!(body["error"]["type"], "invalid_request_error");
            assert_eq!(body["error"]["code"], "invalid_api_key");
            assert_eq!(body["error"]["param"], Value::Null);
            assert_eq!(body["error"]["message"], error.to_string());
        }
    }

    #[test]
    fn config_errors_name_the_key() {
        let mut unset = config();
        unset.keys[1].key_env = Some("ACME_KEY".into());
        assert_eq!(
            load_err(&unset),
            "auth.keys[1].key_env: environment variable \"ACME_KEY\" is not set or empty"
        );

        let mut empty = config();
        empty.admin_key_env = Some("EMPTY_KEY".into());
        assert_eq!(
            load_err(&empty),
            "auth.admin_key_env: environment variable \"EMPTY_KEY\" is not set or empty"
        );

        let cases = [
            (
                AuthConfig {
                    admin_key: Some("sk-a".into()),
                    admin_key_env: Some("ADMIN_KEY".into()),
                    keys: vec![],
                },
                "auth.admin_key_env: set either admin_key or admin_key_env, not both",
            ),
            (
                AuthConfig {
                    keys: vec![tenant("acme", None, None)],
                    ..AuthConfig::default()
                },
                "auth.keys[0]: set key or key_env",
            ),
            (
                AuthConfig {
                    keys: vec![tenant("acme", Some("sk-1"), Some("GLOBEX_KEY"))],
                    ..AuthConfig::default()
                },
                "auth.keys[0].key_env: set either key or key_env, not both",
            ),
            (
                AuthConfig {
                    keys: vec![tenant("", Some("sk-1"), None)],
                    ..AuthConfig::default()
                },
                "auth.keys[0].tenant: must not be empty",
            ),
            (
                AuthConfig {
                    keys: vec![tenant("admin", Some("sk-1"), None)],
                    ..AuthConfig::default()
                },
                "auth.keys[0].tenant: \"admin\" is reserved",
            ),
            (
                AuthConfig {
                    keys: vec![tenant("acme", Some(""), None)],
                    ..AuthConfig::default()
                },
                "auth.keys[0].key: must not be empty",
            ),
            (
                AuthConfig {
                    keys: vec![tenant("acme", Some("sk has space"), None)],
                    ..AuthConfig::default()
                },
                "auth.keys[0].key: key contains whitespace or characters not allowed in an HTTP header",
            ),
            (
                AuthConfig {
                    keys: vec![
                        tenant("acme", Some("sk-1"), None),
                        tenant("acme", Some("sk-2"), None),
                    ],
                    ..AuthConfig::default()
                },
                "auth.keys[1].tenant: duplicate tenant \"acme\"",
            ),
            (
                AuthConfig {
                    keys: vec![
                        tenant("acme", Some("sk-1"), None),
                        tenant("globex", Some("sk-1"), None),
                    ],
                    ..AuthConfig::default()
                },
                "auth.keys[1].key: same key as auth.keys[0]",
            ),
            (
                AuthConfig {
                    admin_key_env: Some("GLOBEX_KEY".into()),
                    keys: vec![tenant("globex", None, Some("GLOBEX_KEY"))],
                    ..AuthConfig::default()
                },
                "auth.keys[0].key_env: same key as auth.admin_key",
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(load_err(&config), expected);
        }
    }

    #[test]
    fn keys_never_show_in_debug_output_or_errors() {
        let secrets = [
            "sk-acme-literal",
            "sk-globex-from-env",
            "sk-admin-from-env",
            "sk has space",
        ];
        let mut config = config();
        let auth_debug = format!("{:?}", authenticator());
        config.admin_key = Some("sk has space".into());
        config.admin_key_env = None;
        let config_debug = format!("{config:?}");
        let error = load_err(&config);
        for text in [&auth_debug, &config_debug, &error] {
            for secret in secrets {
                assert!(!text.contains(secret), "{secret} in {text}");
                assert!(
                    !text.contains(&hex::encode(digest(secret))),
                    "digest of {secret} in {text}"
                );
            }
        }
        assert!(auth_debug.contains("acme") && auth_debug.contains("globex"));
        assert!(config_debug.contains("GLOBEX_KEY"), "{config_debug}");

        let err = authenticator()
            .authenticate(Some("Bearer sk-typo-secret"))
            .unwrap_err();
        let rendered = format!("{err:?} {err} {}", err.body());
        assert!(!rendered.contains("sk-typo-secret"), "{rendered}");
    }

    #[test]
    fn config_deserializes_from_toml() {
        let text = r#"
admin_key_env = "ADMIN_KEY"
[[keys]]
tenant = "acme"
key_env = "GLOBEX_KEY"
"#;
        let config: AuthConfig = toml::from_str(text).unwrap();
        let auth = Authenticator::from_config_with_env(&config, env).unwrap();
        assert_eq!(
            auth.authenticate(Some("Bearer sk-globex-from-env")),
            Ok(Caller::Tenant("acme".into()))
        );
        assert!(toml::from_str::<AuthConfig>("admin_kye = \"x\"").is_err());
    }
}
