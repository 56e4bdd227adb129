//! Token usage as the upstreams report it.

use serde_json::Value;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    /// Reads a chat (`prompt_tokens`/`completion_tokens`) or Responses
    /// (`input_tokens`/`output_tokens`) usage object.
    pub fn from_json(usage: &Value) -> Option<Usage> {
        let count = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|name| usage.get(name).and_then(Value::as_u64))
        };
        let prompt_tokens = count(["prompt_tokens", "input_tokens"]);
        let completion_tokens = count(["completion_tokens", "output_tokens"]);
        if prompt_tokens.is_none() && completion_tokens.is_none() {
            return None;
        }
        Some(Usage {
            prompt_tokens: prompt_tokens.unwrap_or(0),
            completion_tokens: completion_tokens.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_reads_chat_and_responses_shapes() {
        assert_eq!(
            Usage::from_json(&json!({"prompt_tokens": 3, "completion_tokens": 4})),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4
            })
        );
        assert_eq!(
            Usage::from_json(&json!({"input_tokens": 5, "output_tokens": 6})),
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 6
            })
        );
        assert_eq!(Usage::from_json(&json!({"total": 1})), None);
        assert_eq!(Usage::from_json(&Value::Null), None);
    }
}
