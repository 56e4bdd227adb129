//! The labels a request is recorded under: which endpoint served it, how the
//! cache took part, and the status of a request whose client went away.

/// Status recorded when the client went away before the response was complete
/// (nginx's convention; never sent on the wire).
pub const CLIENT_CLOSED: u16 = 499;

/// Which proxied endpoint served the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    ChatCompletions,
    Responses,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::ChatCompletions => "chat_completions",
            Route::Responses => "responses",
        }
    }
}

/// How the response cache took part in the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    Bypass,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "HIT",
            CacheResult::Miss => "MISS",
            CacheResult::Bypass => "BYPASS",
        }
    }
}
