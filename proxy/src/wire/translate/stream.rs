//! Stream translation: chat completion chunks become Responses streaming
//! events, in the order and shapes the official SDKs parse.

use serde_json::{Map, Value, json};

use crate::wire::sse::SseEvent;
use crate::wire::translate::request::wants_logprobs;
use crate::wire::translate::response::{
    Outcome, Status, chat_reasoning, echo_fields, event_logprobs, function_call_item, message_item,
    new_id, output_text_part, part_logprobs, reasoning_item, reasoning_text_part, refusal_part,
    response_object, responses_usage,
};

/// Stamps events with their type and a stream-wide sequence number.
#[derive(Debug, Default)]
struct Sequencer {
    next: u64,
}

impl Sequencer {
    fn event(&mut self, name: &str, fields: Value) -> SseEvent {
        let mut data = match fields {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        data.insert("type".into(), Value::from(name));
        data.insert("sequence_number".into(), Value::from(self.next));
        self.next += 1;
        SseEvent {
            event: name.to_owned(),
            data: Value::Object(data),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartKind {
    Text,
    Refusal,
    /// The `reasoning_text` part of a reasoning item.
    Reasoning,
}

#[derive(Debug)]
struct Part {
    kind: PartKind,
    text: String,
    /// A text part's logprobs so far, in the part's shape.
    logprobs: Vec<Value>,
}

impl Part {
    fn new(kind: PartKind) -> Self {
        Self {
            kind,
            text: String::new(),
            logprobs: Vec::new(),
        }
    }

    fn to_json(&self) -> Value {
        match self.kind {
            PartKind::Text => output_text_part(&self.text, &self.logprobs),
            PartKind::Refusal => refusal_part(&self.text),
            PartKind::Reasoning => reasoning_text_part(&self.text),
        }
    }
}

#[derive(Debug)]
enum ItemKind {
    Message {
        parts: Vec<Part>,
    },
    /// Reasoning a chat upstream sent (`reasoning_content` / `reasoning`):
    /// one `reasoning_text` part.
    Reasoning {
        parts: Vec<Part>,
    },
    FunctionCall {
        chat_index: u64,
        call_id: String,
        name: String,
        arguments: String,
    },
}

#[derive(Debug)]
struct StreamItem {
    id: String,
    status: &'static str,
    kind: ItemKind,
    /// Its `response.output_item.added` went out. An item that turns up while
    /// a function call is still receiving arguments is held back (unsent)
    /// until that call is closed, so items still stream one at a time.
    announced: bool,
}

impl StreamItem {
    fn is_message(&self) -> bool {
        matches!(self.kind, ItemKind::Message { .. })
    }

    /// Whether content of this kind extends the item (a message takes text
    /// and refusals, a reasoning item its reasoning).
    fn takes(&self, kind: PartKind) -> bool {
        match self.kind {
            ItemKind::Message { .. } => kind != PartKind::Reasoning,
            ItemKind::Reasoning { .. } => kind == PartKind::Reasoning,
            ItemKind::FunctionCall { .. } => false,
        }
    }

    /// The item with no content yet, as `response.output_item.added` shows it.
    fn empty_json(&self) -> Value {
        match &self.kind {
            ItemKind::Message { .. } => message_item(&self.id, "in_progress", Vec::new()),
            ItemKind::Reasoning { .. } => reasoning_item(&self.id, "in_progress", Vec::new()),
            ItemKind::FunctionCall { call_id, name, .. } => {
                function_call_item(&self.id, call_id, name, "", "in_progress")
            }
        }
    }

    fn is_function_call(&self) -> bool {
        matches!(self.kind, ItemKind::FunctionCall { .. })
    }

    fn to_json(&self) -> Value {
        match &self.kind {
            ItemKind::Message { parts } => message_item(
                &self.id,
                self.status,
                parts.iter().map(Part::to_json).collect(),
            ),
            ItemKind::Reasoning { parts } => reasoning_item(
                &self.id,
                self.status,
                parts.iter().map(Part::to_json).collect(),
            ),
            ItemKind::FunctionCall {
                call_id,
                name,
                arguments,
                ..
            } => function_call_item(&self.id, call_id, name, arguments, self.status),
        }
    }
}

/// Turns a stream of chat completion chunks into Responses streaming events.
///
/// Items are emitted one at a time, as the Responses API does. A message is
/// closed (`*.done` events) when the next item starts. A function call can
/// receive argument fragments until the stream finishes (upstreams interleave
/// the fragments of parallel calls), so it is closed only then, and whatever
/// turns up after it (more calls, text) is held back and sent whole after it:
/// the done events carry the complete arguments, as the final response does.
/// Reasoning a chat upstream streams (`reasoning_content` / `reasoning`
/// deltas) is a reasoning item of its own, closed when the answer starts;
/// the text's logprobs, when the request included them, ride on each text
/// delta and, whole, on the done events.
#[derive(Debug)]
pub struct ResponsesStreamTranslator {
    echo: Map<String, Value>,
    response_id: String,
    created_at: i64,
    seq: Sequencer,
    items: Vec<StreamItem>,
    /// Index into `items` of the item still receiving deltas.
    open: Option<usize>,
    usage: Value,
    finish_reason: Option<String>,
    /// Message of the error that ended the stream.
    failure: Option<String>,
    final_response: Option<Value>,
    /// The request included the text's logprobs (`message.output_text.logprobs`).
    logprobs: bool,
}

impl ResponsesStreamTranslator {
    /// A chat chunk with a `finish_reason` has been translated: the answer is whole.
    pub fn finished(&self) -> bool {
        self.finish_reason.is_some()
    }

    pub fn new(req: &Value, response_id: String, created_at: i64) -> Self {
        Self {
            echo: echo_fields(req),
            response_id,
            created_at,
            seq: Sequencer::default(),
            items: Vec::new(),
            open: None,
            usage: Value::Null,
            finish_reason: None,
            failure: None,
            final_response: None,
            logprobs: wants_logprobs(req),
        }
    }

    fn ended(&self) -> bool {
        self.final_response.is_some() || self.failure.is_some()
    }

    pub fn start(&mut self) -> Vec<SseEvent> {
        if self.ended() {
            return Vec::new();
        }
        let snapshot = self.final_response();
        vec![
            self.seq
                .event("response.created", json!({"response": snapshot})),
            self.seq
                .event("response.in_progress", json!({"response": snapshot})),
        ]
    }

    pub fn on_chat_chunk(&mut self, chunk: &Value) -> Vec<SseEvent> {
        let mut events = Vec::new();
        if self.ended() {
            return events;
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = usage.clone();
        }
        // Only the first choice is served: a Response has a single output list.
        let choice = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|choices| {
                choices
                    .iter()
                    .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            });
        let Some(choice) = choice else {
            return events;
        };
        if let Some(delta) = choice.get("delta") {
            // A chunk at the turn from reasoning to the answer may carry both.
            if let Some(reasoning) = chat_reasoning(Some(delta)) {
                self.push_content(PartKind::Reasoning, reasoning, &[], &mut events);
            }
            let logprobs = if self.logprobs {
                part_logprobs(Some(choice))
            } else {
                Vec::new()
            };
            let text = delta.get("content").and_then(Value::as_str).unwrap_or("");
            if !text.is_empty() || !logprobs.is_empty() {
                self.push_content(PartKind::Text, text, &logprobs, &mut events);
            }
            if let Some(refusal) = delta.get("refusal").and_then(Value::as_str)
                && !refusal.is_empty()
            {
                self.push_content(PartKind::Refusal, refusal, &[], &mut events);
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for (position, call) in calls.iter().enumerate() {
                    self.push_tool_call(position, call, &mut events);
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
        }
        events
    }

    /// The stream failed after it began: the item the client saw open is
    /// closed as incomplete, then the error, then `response.failed` with the
    /// Response as it stands (the API's last event of a failed response).
    pub fn on_error(&mut self, message: &str, code: &str) -> Vec<SseEvent> {
        let mut events = Vec::new();
        if self.ended() {
            return events;
        }
        self.close_open("incomplete", &mut events);
        events.push(self.seq.event(
            "error",
            json!({"code": code, "message": message, "param": null}),
        ));
        self.failure = Some(message.to_owned());
        let response = self.final_response();
        events.push(
            self.seq
                .event("response.failed", json!({"response": response})),
        );
        events
    }

    pub fn finish(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        if self.ended() {
            return events;
        }
        let outcome = Outcome::from_finish_reason(self.finish_reason.as_deref());
        // Clients expect at least the assistant message, even for an empty reply
        // (or one that ended during its reasoning).
        if !self
            .items
            .iter()
            .any(|item| item.is_message() || item.is_function_call())
        {
            self.close_open(outcome.item_status(), &mut events);
            self.open_item(PartKind::Text, &mut events);
        }
        self.close_open(outcome.item_status(), &mut events);
        for index in 0..self.items.len() {
            if !self.items[index].announced {
                self.send_whole(index, outcome.item_status(), &mut events);
            }
        }

        let response = response_object(
            &self.echo,
            &self.response_id,
            self.created_at,
            Status::Finished(outcome),
            self.items.iter().map(StreamItem::to_json).collect(),
            responses_usage(Some(&self.usage)),
        );
        let name = match outcome {
            Outcome::Completed => "response.completed",
            Outcome::Incomplete(_) => "response.incomplete",
        };
        events.push(self.seq.event(name, json!({"response": response})));
        self.final_response = Some(response);
        events
    }

    pub fn final_response(&self) -> Value {
        if let Some(response) = &self.final_response {
            return response.clone();
        }
        let status = match &self.failure {
            Some(message) => Status::Failed { message },
            None => Status::InProgress,
        };
        // Only what the client was told about.
        let output = self
            .items
            .iter()
            .filter(|item| item.announced)
            .map(StreamItem::to_json)
            .collect();
        response_object(
            &self.echo,
            &self.response_id,
            self.created_at,
            status,
            output,
            responses_usage(Some(&self.usage)),
        )
    }

    /// The function call still receiving arguments, if that is the open item.
    fn call_is_open(&self) -> bool {
        self.open
            .and_then(|index| self.items.get(index))
            .is_some_and(StreamItem::is_function_call)
    }

    /// Text, a refusal or reasoning (`kind`), with the logprobs of the text.
    fn push_content(
        &mut self,
        kind: PartKind,
        delta: &str,
        logprobs: &[Value],
        events: &mut Vec<SseEvent>,
    ) {
        // The last item takes the content when it is of its kind: the open
        // one, or one held back behind an open call.
        let index = match self.items.last() {
            Some(last) if last.takes(kind) => self.items.len() - 1,
            _ if self.call_is_open() => {
                self.items.push(StreamItem {
                    id: new_id(item_prefix(kind)),
                    status: "in_progress",
                    kind: item_kind(kind, Vec::new()),
                    announced: false,
                });
                self.items.len() - 1
            }
            _ => {
                self.close_open("completed", events);
                self.open_item(kind, events)
            }
        };
        let Some(item) = self.items.get_mut(index) else {
            return;
        };
        let announced = item.announced;
        let (ItemKind::Message { parts } | ItemKind::Reasoning { parts }) = &mut item.kind else {
            return;
        };
        if !announced {
            if parts.last().map(|p| p.kind) != Some(kind) {
                parts.push(Part::new(kind));
            }
            if let Some(part) = parts.last_mut() {
                part.text.push_str(delta);
                part.logprobs.extend_from_slice(logprobs);
            }
            return;
        }
        if parts.last().map(|p| p.kind) != Some(kind) {
            if let Some(previous) = parts.last() {
                events.extend(part_done_events(
                    &mut self.seq,
                    &item.id,
                    index,
                    parts.len() - 1,
                    previous,
                ));
            }
            parts.push(Part::new(kind));
            events.push(part_added_event(
                &mut self.seq,
                &item.id,
                index,
                parts.len() - 1,
                kind,
            ));
        }
        let content_index = parts.len() - 1;
        if let Some(part) = parts.last_mut() {
            part.text.push_str(delta);
            part.logprobs.extend_from_slice(logprobs);
        }
        events.push(content_delta_event(
            &mut self.seq,
            &item.id,
            index,
            content_index,
            kind,
            delta,
            logprobs,
        ));
    }

    /// Adds a new item for content of `kind` (a message, or a reasoning
    /// item) with one empty part; returns its index.
    fn open_item(&mut self, kind: PartKind, events: &mut Vec<SseEvent>) -> usize {
        let item = StreamItem {
            id: new_id(item_prefix(kind)),
            status: "in_progress",
            kind: item_kind(kind, vec![Part::new(kind)]),
            announced: true,
        };
        let index = self.items.len();
        // The item is announced empty; its first part follows in its own event.
        events.push(self.seq.event(
            "response.output_item.added",
            json!({"output_index": index, "item": item.empty_json()}),
        ));
        events.push(part_added_event(&mut self.seq, &item.id, index, 0, kind));
        self.items.push(item);
        self.open = Some(index);
        index
    }

    fn push_tool_call(&mut self, position: usize, call: &Value, events: &mut Vec<SseEvent>) {
        // Chat identifies a streamed tool call by `index`; its id and name come
        // only on the first fragment.
        let chat_index = call
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let function = call.get("function");
        let name = function
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let arguments = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .unwrap_or_default();

        let existing = self.items.iter().position(|item| {
            matches!(item.kind, ItemKind::FunctionCall { chat_index: i, .. } if i == chat_index)
        });
        let index = match existing {
            Some(index) => index,
            None => {
                // Behind a call that may still receive fragments, a new call waits.
                let held = self.call_is_open();
                if !held {
                    self.close_open("completed", events);
                }
                let call_id = call
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| new_id("call"), str::to_owned);
                let item = StreamItem {
                    id: new_id("fc"),
                    status: "in_progress",
                    kind: ItemKind::FunctionCall {
                        chat_index,
                        call_id,
                        name: name.to_owned(),
                        arguments: String::new(),
                    },
                    announced: !held,
                };
                let index = self.items.len();
                if !held {
                    events.push(self.seq.event(
                        "response.output_item.added",
                        json!({"output_index": index, "item": item.to_json()}),
                    ));
                    self.open = Some(index);
                }
                self.items.push(item);
                index
            }
        };

        let is_open = self.open == Some(index);
        let Some(item) = self.items.get_mut(index) else {
            return;
        };
        let ItemKind::FunctionCall {
            name: item_name,
            arguments: item_arguments,
            ..
        } = &mut item.kind
        else {
            return;
        };
        if item_name.is_empty() {
            item_name.push_str(name);
        }
        if arguments.is_empty() {
            return;
        }
        item_arguments.push_str(arguments);
        // A call is closed only when the stream finishes, so a fragment is
        // either streamed now or part of a held-back call sent whole later.
        if is_open {
            events.push(self.seq.event(
                "response.function_call_arguments.delta",
                json!({"item_id": item.id, "output_index": index, "delta": arguments}),
            ));
        }
    }

    /// Sends a held-back item in one go: added, its content or arguments as
    /// one delta each, and its done events.
    fn send_whole(&mut self, index: usize, status: &'static str, events: &mut Vec<SseEvent>) {
        let Some(item) = self.items.get_mut(index) else {
            return;
        };
        item.announced = true;
        let seq = &mut self.seq;
        events.push(seq.event(
            "response.output_item.added",
            json!({"output_index": index, "item": item.empty_json()}),
        ));
        match &item.kind {
            ItemKind::Message { parts } | ItemKind::Reasoning { parts } => {
                for (content_index, part) in parts.iter().enumerate() {
                    events.push(part_added_event(
                        seq,
                        &item.id,
                        index,
                        content_index,
                        part.kind,
                    ));
                    events.push(content_delta_event(
                        seq,
                        &item.id,
                        index,
                        content_index,
                        part.kind,
                        &part.text,
                        &part.logprobs,
                    ));
                    events.extend(part_done_events(seq, &item.id, index, content_index, part));
                }
            }
            ItemKind::FunctionCall {
                name, arguments, ..
            } => {
                if !arguments.is_empty() {
                    events.push(seq.event(
                        "response.function_call_arguments.delta",
                        json!({"item_id": item.id, "output_index": index, "delta": arguments}),
                    ));
                }
                events.push(arguments_done_event(seq, &item.id, index, name, arguments));
            }
        }
        item.status = status;
        events.push(item_done_event(seq, index, item));
    }

    fn close_open(&mut self, status: &'static str, events: &mut Vec<SseEvent>) {
        let Some(index) = self.open.take() else {
            return;
        };
        let Some(item) = self.items.get_mut(index) else {
            return;
        };
        item.status = status;
        match &item.kind {
            ItemKind::Message { parts } | ItemKind::Reasoning { parts } => {
                if let Some(last) = parts.last() {
                    events.extend(part_done_events(
                        &mut self.seq,
                        &item.id,
                        index,
                        parts.len() - 1,
                        last,
                    ));
                }
            }
            ItemKind::FunctionCall {
                name, arguments, ..
            } => events.push(arguments_done_event(
                &mut self.seq,
                &item.id,
                index,
                name,
                arguments,
            )),
        }
        events.push(item_done_event(&mut self.seq, index, item));
    }
}

/// The id prefix of the item content of `kind` goes in.
fn item_prefix(kind: PartKind) -> &'static str {
    match kind {
        PartKind::Reasoning => "rs",
        PartKind::Text | PartKind::Refusal => "msg",
    }
}

/// The item content of `kind` goes in, with these parts.
fn item_kind(kind: PartKind, parts: Vec<Part>) -> ItemKind {
    match kind {
        PartKind::Reasoning => ItemKind::Reasoning { parts },
        PartKind::Text | PartKind::Refusal => ItemKind::Message { parts },
    }
}

fn arguments_done_event(
    seq: &mut Sequencer,
    item_id: &str,
    output_index: usize,
    name: &str,
    arguments: &str,
) -> SseEvent {
    seq.event(
        "response.function_call_arguments.done",
        json!({
            "item_id": item_id,
            "output_index": output_index,
            "name": name,
            "arguments": arguments,
        }),
    )
}

fn item_done_event(seq: &mut Sequencer, output_index: usize, item: &StreamItem) -> SseEvent {
    seq.event(
        "response.output_item.done",
        json!({"output_index": output_index, "item": item.to_json()}),
    )
}

fn part_added_event(
    seq: &mut Sequencer,
    item_id: &str,
    output_index: usize,
    content_index: usize,
    kind: PartKind,
) -> SseEvent {
    let empty = Part::new(kind);
    seq.event(
        "response.content_part.added",
        json!({
            "item_id": item_id,
            "output_index": output_index,
            "content_index": content_index,
            "part": empty.to_json(),
        }),
    )
}

fn content_delta_event(
    seq: &mut Sequencer,
    item_id: &str,
    output_index: usize,
    content_index: usize,
    kind: PartKind,
    delta: &str,
    logprobs: &[Value],
) -> SseEvent {
    let mut fields = json!({
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "delta": delta,
    });
    let name = match kind {
        PartKind::Text => {
            fields["logprobs"] = Value::Array(event_logprobs(logprobs));
            "response.output_text.delta"
        }
        PartKind::Refusal => "response.refusal.delta",
        PartKind::Reasoning => "response.reasoning_text.delta",
    };
    seq.event(name, fields)
}

fn part_done_events(
    seq: &mut Sequencer,
    item_id: &str,
    output_index: usize,
    content_index: usize,
    part: &Part,
) -> [SseEvent; 2] {
    let mut fields = json!({
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
    });
    let name = match part.kind {
        PartKind::Text => {
            fields["text"] = Value::from(part.text.as_str());
            fields["logprobs"] = Value::Array(event_logprobs(&part.logprobs));
            "response.output_text.done"
        }
        PartKind::Refusal => {
            fields["refusal"] = Value::from(part.text.as_str());
            "response.refusal.done"
        }
        PartKind::Reasoning => {
            fields["text"] = Value::from(part.text.as_str());
            "response.reasoning_text.done"
        }
    };
    let text_done = seq.event(name, fields);
    let part_done = seq.event(
        "response.content_part.done",
        json!({
            "item_id": item_id,
            "output_index": output_index,
            "content_index": content_index,
            "part": part.to_json(),
        }),
    );
    [text_done, part_done]
}
