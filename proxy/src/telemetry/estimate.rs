//! Token estimates for a stream the client cut before the upstream reported
//! usage. The estimate counts whitespace-separated words of the input texts,
//! the same rule the mock upstream uses for its exact counts; for a real model
//! it is only a rough lower bound of the prompt tokens.

use serde_json::Value;

/// Words of every message's text: string content, or the text parts of a list.
pub fn chat_prompt_words(messages: Option<&Value>) -> u64 {
    messages.and_then(Value::as_array).map_or(0, |messages| {
        messages
            .iter()
            .map(|message| content_words(message.get("content")))
            .sum()
    })
}

/// Words of `instructions` plus every input text (a string `input`, or the
/// string content / text parts of its items).
pub fn responses_prompt_words(request: &Value) -> u64 {
    let instructions = request
        .get("instructions")
        .and_then(Value::as_str)
        .map_or(0, words);
    let input = match request.get("input") {
        Some(Value::String(text)) => words(text),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => words(text),
                _ => content_words(item.get("content")),
            })
            .sum(),
        _ => 0,
    };
    instructions + input
}

fn content_words(content: Option<&Value>) -> u64 {
    match content {
        Some(Value::String(text)) => words(text),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .map(words)
            .sum(),
        _ => 0,
    }
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_counts_string_and_part_texts() {
        let messages = json!([
            {"role": "system", "content": "be  brief"},
            {"role": "user", "content": [{"type": "text", "text": "one two three"},
                                         {"type": "image_url", "image_url": {"url": "x"}}]},
            {"role": "assistant", "content": null},
        ]);
        assert_eq!(chat_prompt_words(Some(&messages)), 5);
        assert_eq!(chat_prompt_words(None), 0);
    }

    #[test]
    fn responses_counts_instructions_and_inputs() {
        assert_eq!(
            responses_prompt_words(&json!({"instructions": "a b", "input": "c d e"})),
            5
        );
        let request = json!({"input": [
            {"role": "user", "content": "hello there"},
            {"role": "user", "content": [{"type": "input_text", "text": "more words here"}]},
            {"type": "function_call_output", "call_id": "c", "output": "ignored"},
        ]});
        assert_eq!(responses_prompt_words(&request), 5);
    }
}
