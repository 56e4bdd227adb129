//! The application state every handler and middleware shares: configured models and upstreams, their
//! pooled clients, routing and health, the response store and cache, who may
//! call, and where finished requests are reported (ledger, metrics).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::config::auth::Authenticator;
use crate::config::file::Config;
use crate::config::ledger::Prices;
use crate::config::tables::ModelConfig;
use crate::gateway::dispatch::Gateway;
use crate::gateway::upstream::Upstream;
use crate::shared::error::ApiError;
use crate::shared::time::unix_now;
use crate::store::cache::backend::ResponseCache;
use crate::store::conversations::ResponseStore;
use crate::store::ledger::{Ledger, LedgerRecord};
use crate::store::pins::ResponsePins;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::outcome::{LogSink, OutcomeSink, RequestOutcome};

pub type SharedState = Arc<AppState>;

pub struct AppState {
    pub config: Config,
    /// The upstreams, their routing and health.
    pub gateway: Gateway,
    /// Model name -> position in `config.models`.
    model_positions: HashMap<String, usize>,
    pub store: Arc<ResponseStore>,
    /// Which upstream holds each native response the proxy relayed.
    pub pins: Arc<ResponsePins>,
    pub cache: Arc<ResponseCache>,
    pub auth: Arc<Authenticator>,
    pub ledger: Arc<Ledger>,
    pub metrics: Arc<Metrics>,
    /// Cache backend errors already added to the metrics counter.
    cache_errors_counted: AtomicU64,
    sinks: Vec<Arc<dyn OutcomeSink>>,
    pub started: Instant,
    pub started_unix: i64,
}

impl AppState {
    /// Errors name the config file and key, like config errors.
    pub async fn new(config: Config) -> Result<Self, String> {
        let gateway = Gateway::new(&config)?;
        let model_positions = config
            .models
            .iter()
            .enumerate()
            .map(|(position, model)| (model.name.clone(), position))
            .collect();
        let ledger = Arc::new(
            Ledger::open(&config.ledger, &config.base_dir)
                .map_err(|err| format!("{}: {err}", config.file))?,
        );
        let upstream_names: Vec<String> = config
            .upstreams
            .iter()
            .map(|upstream| upstream.name.clone())
            .collect();
        let metrics = Arc::new(Metrics::new(&upstream_names, config.slo));
        let sinks: Vec<Arc<dyn OutcomeSink>> = vec![
            Arc::new(LogSink),
            Arc::new(LedgerSink {
                ledger: ledger.clone(),
                prices: config.prices.clone(),
            }),
            metrics.clone(),
        ];
        Ok(AppState {
            store: Arc::new(ResponseStore::with_budget(
                config.server.response_store_capacity,
                config.server.response_store_bytes,
            )),
            pins: Arc::new(ResponsePins::new(config.server.response_store_capacity)),
            cache: Arc::new(ResponseCache::new(&config.cache).await),
            auth: config
                .authenticator
                .clone()
                .ok_or("the configuration was not validated")?,
            gateway,
            model_positions,
            ledger,
            metrics,
            cache_errors_counted: AtomicU64::new(0),
            sinks,
            config,
            started: Instant::now(),
            started_unix: unix_now(),
        })
    }

    /// Adds a place outcomes go, next to the ledger and the metrics.
    pub fn with_sink(mut self, sink: Arc<dyn OutcomeSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Position of a served model in `config.models`.
    pub fn model_index(&self, model: &str) -> Result<usize, ApiError> {
        self.model_positions
            .get(model)
            .copied()
            .ok_or_else(|| ApiError::ModelNotFound(model.to_owned()))
    }

    pub fn model(&self, index: usize) -> &ModelConfig {
        &self.config.models[index]
    }

    /// The model name to send upstream for a configured model.
    pub fn upstream_model(&self, index: usize) -> &str {
        let model = self.model(index);
        model.upstream_model.as_deref().unwrap_or(&model.name)
    }

    pub fn upstream(&self, index: usize) -> &Upstream {
        self.gateway.upstream(index)
    }

    pub fn report(&self, outcome: &RequestOutcome) {
        for sink in &self.sinks {
            sink.report(outcome);
        }
    }

    /// Brings the gauges and counters that mirror other components' state up
    /// to date, then renders the Prometheus text.
    pub fn render_metrics(&self) -> String {
        for (index, upstream) in self.config.upstreams.iter().enumerate() {
            self.metrics
                .set_upstream_healthy(&upstream.name, self.gateway.routing.health(index).healthy);
        }
        let errors = self.cache.errors();
        let counted = self.cache_errors_counted.swap(errors, Ordering::Relaxed);
        for _ in counted..errors {
            self.metrics.cache_error();
        }
        self.metrics.render()
    }
}

/// Appends each outcome to the ledger, costed with the price table.
struct LedgerSink {
    ledger: Arc<Ledger>,
    prices: Prices,
}

impl OutcomeSink for LedgerSink {
    fn report(&self, outcome: &RequestOutcome) {
        self.ledger
            .append(LedgerRecord::from_outcome(outcome, &self.prices));
    }
}

impl OutcomeSink for Metrics {
    fn report(&self, outcome: &RequestOutcome) {
        self.observe(outcome);
    }
}
