//! Node's IPC channel in json mode: line framing (`codec`), the egg envelope
//! and Node's internal messages (`message`). Pure code: no I/O here.

pub mod codec;
pub mod json;
pub mod message;
