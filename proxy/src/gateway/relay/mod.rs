//! One relay for every answer: the stream state machine (`stream`) with its
//! two inspectors, events relayed as sent (`passthrough`) or translated from
//! chat into Responses events (`translation`), and whole answers (`answer`).

pub mod answer;
pub mod passthrough;
pub mod stream;
pub mod translation;
