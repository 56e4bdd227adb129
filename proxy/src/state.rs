//! State shared by all handlers: configured models and upstreams, their
//! pooled clients, and the response store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Config, ModelConfig};
use crate::error::ApiError;
use crate::store::ResponseStore;
use crate::upstream::Upstream;

pub type SharedState = Arc<AppState>;

pub struct AppState {
    pub config: Config,
    upstreams: HashMap<String, Upstream>,
    /// Model name -> position in `config.models`, which keeps the configured order for listings.
    model_positions: HashMap<String, usize>,
    pub store: ResponseStore,
    pub started: Instant,
    pub started_unix: i64,
}

/// Where one request goes.
pub struct Route<'a> {
    pub model: &'a ModelConfig,
    pub upstream: &'a Upstream,
}

impl Route<'_> {
    /// The model name to send upstream.
    pub fn upstream_model(&self) -> &str {
        self.model
            .upstream_model
            .as_deref()
            .unwrap_or(&self.model.name)
    }
}

impl AppState {
    pub fn new(config: Config) -> Result<Self, reqwest::Error> {
        let upstreams = config
            .upstreams
            .iter()
            .map(|upstream| Ok((upstream.name.clone(), Upstream::new(upstream)?)))
            .collect::<Result<_, reqwest::Error>>()?;
        let model_positions = config
            .models
            .iter()
            .enumerate()
            .map(|(position, model)| (model.name.clone(), position))
            .collect();
        Ok(AppState {
            store: ResponseStore::new(config.server.response_store_capacity),
            upstreams,
            model_positions,
            config,
            started: Instant::now(),
            started_unix: unix_now(),
        })
    }

    pub fn route(&self, model: &str) -> Result<Route<'_>, ApiError> {
        let not_found = || ApiError::ModelNotFound(model.to_owned());
        let model = self
            .model_positions
            .get(model)
            .and_then(|&position| self.config.models.get(position))
            .ok_or_else(not_found)?;
        // Config validation guarantees the first listed upstream exists.
        let upstream = model
            .upstreams
            .first()
            .and_then(|name| self.upstreams.get(name))
            .ok_or_else(not_found)?;
        Ok(Route { model, upstream })
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}
