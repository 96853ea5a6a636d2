//! What a line from a worker means: an egg envelope (an object, or a bare
//! string that egg reads as `{action: s, data: s}`) or one of Node's internal
//! messages (`{"cmd":"NODE_…"}`). Envelopes are parsed one level deep: every
//! value stays a borrowed `RawValue`, so `data` is validated but never decoded,
//! and re-encoding copies its bytes untouched.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

use super::json::{self, Span};

/// A line as the master sees it.
#[derive(Debug)]
pub enum Incoming<'a> {
  /// An egg message (user level).
  User(Envelope<'a>),
  /// A Node internal message: its `cmd` and the whole object.
  Internal {
    cmd: Cow<'a, str>,
    object: RawObject<'a>,
  },
}

/// Why a line was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum MessageError {
  NotUtf8,
  NotJson(String),
  /// Valid JSON but neither an object nor a string (egg cannot route it).
  NotAnObject(&'static str),
}

impl fmt::Display for MessageError {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      MessageError::NotUtf8 => write!(f, "the line is not valid UTF-8"),
      MessageError::NotJson(e) => write!(f, "the line is not valid JSON ({e})"),
      MessageError::NotAnObject(kind) => {
        write!(f, "a message must be an object or a string, got {kind}")
      }
    }
  }
}

/// A JSON value's text, validated (by the scanner or serde_json) and never
/// decoded: `data` is forwarded as these bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw<'a>(&'a str);

impl<'a> Raw<'a> {
  pub fn get(self) -> &'a str {
    self.0
  }
}

/// Members an object holds without a heap allocation (egg's envelopes have
/// at most six).
const INLINE_MEMBERS: usize = 8;

// Inline on purpose, as `Envelope` below: boxing would cost an allocation
// per relayed message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Members<'a> {
  Inline {
    len: usize,
    items: [(&'a str, Raw<'a>); INLINE_MEMBERS],
  },
  Heap(Vec<(Cow<'a, str>, Raw<'a>)>),
}

/// The top-level members of a JSON object, in order, values unparsed.
#[derive(Debug)]
pub struct RawObject<'a>(Members<'a>);

impl Default for RawObject<'_> {
  fn default() -> Self {
    RawObject(Members::Inline {
      len: 0,
      items: [("", Raw("")); INLINE_MEMBERS],
    })
  }
}

impl<'a> RawObject<'a> {
  fn push(&mut self, key: Cow<'a, str>, value: Raw<'a>) {
    match &mut self.0 {
      Members::Inline { len, items } => {
        if let (true, Cow::Borrowed(k)) = (*len < INLINE_MEMBERS, &key) {
          items[*len] = (k, value);
          *len += 1;
          return;
        }
        let mut heap = Vec::with_capacity(*len * 2 + 1);
        heap.extend(items[..*len].iter().map(|&(k, v)| (Cow::Borrowed(k), v)));
        heap.push((key, value));
        self.0 = Members::Heap(heap);
      }
      Members::Heap(heap) => heap.push((key, value)),
    }
  }

  pub fn len(&self) -> usize {
    match &self.0 {
      Members::Inline { len, .. } => *len,
      Members::Heap(heap) => heap.len(),
    }
  }

  pub fn is_empty(&self) -> bool {
    self.len() == 0
  }

  fn member(&self, index: usize) -> (&str, Raw<'a>) {
    match &self.0 {
      Members::Inline { items, .. } => items[index],
      Members::Heap(heap) => (heap[index].0.as_ref(), heap[index].1),
    }
  }

  /// The members in order (a duplicated key appears each time).
  pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, Raw<'a>)> + '_ {
    (0..self.len()).map(move |i| self.member(i))
  }

  /// The value of `key` (the last one, as `JSON.parse` keeps it).
  pub fn get(&self, key: &str) -> Option<Raw<'a>> {
    self.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v)
  }

  /// A member that is a JSON string, decoded.
  pub fn get_str(&self, key: &str) -> Option<Cow<'a, str>> {
    raw_as_str(self.get(key)?)
  }
}

/// Decodes a raw JSON string value (None for anything else).
pub fn raw_as_str(raw: Raw<'_>) -> Option<Cow<'_, str>> {
  let text = raw.get();
  let body = text.strip_prefix('"')?.strip_suffix('"')?;
  if !body.contains('\\') {
    // validated JSON: without escapes the body is the string itself
    return Some(Cow::Borrowed(body));
  }
  serde_json::from_str::<Cow<'_, str>>(text).ok()
}

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
  fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
    struct KeyVisitor;
    impl<'de> Visitor<'de> for KeyVisitor {
      type Value = Key<'de>;
      fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
      }
      fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Borrowed(v)))
      }
      fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(v.to_owned())))
      }
    }
    d.deserialize_str(KeyVisitor)
  }
}

impl<'de> Deserialize<'de> for RawObject<'de> {
  fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
    struct ObjVisitor;
    impl<'de> Visitor<'de> for ObjVisitor {
      type Value = RawObject<'de>;
      fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
      }
      fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = RawObject::default();
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
          let v: &'de RawValue = map.next_value()?;
          object.push(k, Raw(v.get()));
        }
        Ok(object)
      }
    }
    d.deserialize_map(ObjVisitor)
  }
}

/// An egg message: `{action, data, to, from, receiverPid, …}`.
#[allow(clippy::large_enum_variant)] // see `Members`
#[derive(Debug)]
pub enum Envelope<'a> {
  Object(RawObject<'a>),
  /// A bare string `s`: egg treats it as `{action: s, data: s}`.
  Str(Raw<'a>),
}

/// Who a `receiverPid` (or `receiverWorkerId`) names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiverPid {
  Pid(u32),
  /// Present and truthy but not a pid: matches nobody.
  Unknown,
}

/// The receiver a `receiverPid` value names, or None when it is falsy in JS
/// terms. A number names the same pid as its decimal string.
fn receiver_of(raw: Raw<'_>) -> Option<ReceiverPid> {
  let text = raw.get();
  if text.starts_with('{') || text.starts_with('[') {
    // truthy in JS, and never a pid (not decoded: it may be nested deep)
    return Some(ReceiverPid::Unknown);
  }
  let value: serde_json::Value = serde_json::from_str(text).ok()?;
  let pid = match &value {
    serde_json::Value::String(s) if s.is_empty() => return None,
    serde_json::Value::String(s) => s.parse::<u32>().ok(),
    serde_json::Value::Number(n) if n.as_f64() == Some(0.0) => return None,
    serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
    serde_json::Value::Null | serde_json::Value::Bool(false) => return None,
    _ => None,
  };
  Some(pid.map_or(ReceiverPid::Unknown, ReceiverPid::Pid))
}

impl<'a> Envelope<'a> {
  /// `to` as egg reads it: a falsy value (absent, `""`, `null`, `false`,
  /// `0`) is no `to` at all; a truthy value that is not a string names no
  /// known receiver (it is returned as `"?"`, which routes nowhere).
  pub fn to(&self) -> Option<Cow<'a, str>> {
    let Envelope::Object(o) = self else {
      return None;
    };
    let raw = o.get("to")?;
    match raw_as_str(raw) {
      Some(s) if s.is_empty() => None,
      Some(s) => Some(s),
      None => match raw.get() {
        "null" | "false" | "0" | "-0" => None,
        text if text.parse::<f64>().is_ok_and(|n| n == 0.0) => None,
        _ => Some(Cow::Borrowed("?")),
      },
    }
  }

  pub fn action(&self) -> Option<Cow<'a, str>> {
    match self {
      Envelope::Object(o) => o.get_str("action"),
      Envelope::Str(s) => raw_as_str(*s),
    }
  }

  /// Who the message names: `receiverPid` when it is truthy in JS terms,
  /// else egg 4's `receiverWorkerId` when that is.
  pub fn receiver_pid(&self) -> Option<ReceiverPid> {
    let Envelope::Object(o) = self else {
      return None;
    };
    ["receiverPid", "receiverWorkerId"]
      .into_iter()
      .find_map(|key| o.get(key).and_then(receiver_of))
  }

  /// Who the envelope names, by the rule of egg's generation. egg 3
  /// (`worker_id_first` false): `receiver_pid`. egg 4 (`@eggjs/cluster` 3):
  /// `receiverWorkerId ?? receiverPid`, so a `receiverWorkerId` that is
  /// present and not null decides, and a falsy one names nobody.
  pub fn receiver(&self, worker_id_first: bool) -> Option<ReceiverPid> {
    if !worker_id_first {
      return self.receiver_pid();
    }
    let Envelope::Object(o) = self else {
      return None;
    };
    match o.get("receiverWorkerId") {
      Some(id) if id.get() != "null" => receiver_of(id),
      _ => o.get("receiverPid").and_then(receiver_of),
    }
  }

  /// The line a receiver gets: the same members with `from` and `to` set,
  /// in JS property order (existing keys keep their place, new ones are
  /// appended: `from` first, then `to`), `\n`-terminated.
  pub fn encode(&self, from: &str, to: &str) -> Vec<u8> {
    let mut out = Vec::new();
    self.encode_into(&mut out, from, to);
    out
  }

  /// `encode`, appended to `out` (so a batch of lines shares one buffer).
  pub fn encode_into(&self, out: &mut Vec<u8>, from: &str, to: &str) {
    match self {
      Envelope::Str(s) => {
        let s = s.get();
        out.reserve(s.len() * 2 + 48);
        out.extend_from_slice(b"{\"action\":");
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b",\"from\":");
        push_json_str(out, from);
        out.extend_from_slice(b",\"to\":");
        push_json_str(out, to);
        out.extend_from_slice(b"}\n");
      }
      Envelope::Object(o) => {
        let size: usize = o.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum();
        out.reserve(size + from.len() + to.len() + 24);
        out.push(b'{');
        let mut first = true;
        let mut seen_from = false;
        let mut seen_to = false;
        // A duplicated key in JSON keeps its first position and last value in JS.
        let mut emitted: Vec<&str> = Vec::with_capacity(o.len());
        for (k, _) in o.iter() {
          if emitted.contains(&k) {
            continue;
          }
          emitted.push(k);
          if !first {
            out.push(b',');
          }
          first = false;
          push_json_str(out, k);
          out.push(b':');
          match k {
            "from" => {
              seen_from = true;
              push_json_str(out, from);
            }
            "to" => {
              seen_to = true;
              push_json_str(out, to);
            }
            key => {
              let v = o.get(key).map_or("null", |v| v.get());
              out.extend_from_slice(v.as_bytes());
            }
          }
        }
        close_with_from_to(out, !first, [(seen_from, from), (seen_to, to)]);
      }
    }
  }
}

impl<'a> Envelope<'a> {
  /// `encode_into` for an envelope parsed from `source` (the line it came
  /// from): the original bytes are copied and only the values of `from` and
  /// `to` are replaced (or appended, `from` then `to`, as JS property order
  /// has it), instead of re-encoding every member. The output is the same.
  pub fn encode_spliced(&self, source: &str, out: &mut Vec<u8>, from: &str, to: &str) {
    if let Envelope::Object(o) = self {
      if splice(o, source, out, from, to) {
        return;
      }
    }
    self.encode_into(out, from, to);
  }
}

/// The byte range of `raw` inside `source`, if it lies there.
fn span_in(source: &str, raw: Raw<'_>) -> Option<(usize, usize)> {
  let base = source.as_ptr() as usize;
  let start = (raw.get().as_ptr() as usize).checked_sub(base)?;
  let end = start + raw.get().len();
  (end <= source.len()).then_some((start, end))
}

fn splice(o: &RawObject<'_>, source: &str, out: &mut Vec<u8>, from: &str, to: &str) -> bool {
  // duplicated keys: JS keeps the first position and the last value; re-encode those
  for (i, (k, _)) in o.iter().enumerate() {
    if o.iter().take(i).any(|(other, _)| other == k) {
      return false;
    }
  }
  // the values of `from` and `to`, in source order
  let mut edits: [(usize, usize, &str); 2] = [(0, 0, ""); 2];
  let mut n_edits = 0;
  let mut seen_from = false;
  let mut seen_to = false;
  for (k, v) in o.iter() {
    let value = match k {
      "from" => {
        seen_from = true;
        from
      }
      "to" => {
        seen_to = true;
        to
      }
      _ => continue,
    };
    let Some((start, end)) = span_in(source, v) else {
      return false;
    };
    let Some(slot) = edits.get_mut(n_edits) else {
      return false;
    };
    *slot = (start, end, value);
    n_edits += 1;
  }
  let Some(close) = source.rfind('}') else {
    return false;
  };
  let edits = &edits[..n_edits];
  // in order, inside the object (nothing is written before this holds)
  let mut at = 0;
  for &(start, end, _) in edits {
    if start < at || end > close {
      return false;
    }
    at = end;
  }
  out.reserve(source.len() + from.len() + to.len() + 24);
  let mut at = 0;
  for &(start, end, value) in edits {
    out.extend_from_slice(&source.as_bytes()[at..start]);
    push_json_str(out, value);
    at = end;
  }
  out.extend_from_slice(&source.as_bytes()[at..close]);
  close_with_from_to(out, !o.is_empty(), [(seen_from, from), (seen_to, to)]);
  true
}

/// Appends the `from` and `to` members an object did not have (in that
/// order, as JS assignment appends them), then `}` and the newline.
/// `[(had_from, from), (had_to, to)]`; `has_members` says whether a comma is due.
fn close_with_from_to(out: &mut Vec<u8>, has_members: bool, members: [(bool, &str); 2]) {
  let mut comma = has_members;
  for ((present, value), key) in members.into_iter().zip(["from", "to"]) {
    if !present {
      if comma {
        out.push(b',');
      }
      comma = true;
      push_json_str(out, key);
      out.push(b':');
      push_json_str(out, value);
    }
  }
  out.extend_from_slice(b"}\n");
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
  if s
    .bytes()
    .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
  {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
  } else if serde_json::to_writer(&mut *out, s).is_err() {
    out.extend_from_slice(b"\"\"");
  }
}

/// Classifies one line (without its `\n`).
pub fn parse_line(line: &[u8]) -> Result<Incoming<'_>, MessageError> {
  parse_source(line).map(|(_, incoming)| incoming)
}

/// `parse_line`, also giving the line as text: the source that
/// `Envelope::encode_spliced` copies from.
pub fn parse_source(line: &[u8]) -> Result<(&str, Incoming<'_>), MessageError> {
  if let Some(parsed) = parse_plain_object(line) {
    return Ok(parsed);
  }
  let text = std::str::from_utf8(line).map_err(|_| MessageError::NotUtf8)?;
  Ok((text, parse_text(text)?))
}

/// The fast path for what nearly every line is: an object whose keys have no
/// escapes, with few members. Validated by `json::scan_object` in one pass,
/// nothing allocated. None for anything else (serde_json decides then).
fn parse_plain_object(line: &[u8]) -> Option<(&str, Incoming<'_>)> {
  let empty = Span { start: 0, end: 0 };
  let mut spans = [(empty, empty); INLINE_MEMBERS];
  let mut count = 0;
  let scanned = json::scan_object(line, |key, value| {
    if let Some(slot) = spans.get_mut(count) {
      *slot = (key, value);
    }
    count += 1;
  })?;
  if count > INLINE_MEMBERS {
    return None;
  }
  let text = if scanned.non_ascii {
    std::str::from_utf8(line).ok()?
  } else {
    debug_assert!(line.is_ascii());
    // SAFETY: the scanner saw every byte of the line and none was outside
    // ASCII (`non_ascii` is false), so the bytes are UTF-8.
    unsafe { std::str::from_utf8_unchecked(line) }
  };
  let mut object = RawObject::default();
  for (key, value) in &spans[..count] {
    // the spans start and end at ASCII delimiters: char boundaries
    let key = text.get(key.start..key.end)?;
    let value = text.get(value.start..value.end)?;
    object.push(Cow::Borrowed(key), Raw(value));
  }
  Some((text, classify_object(object)))
}

fn classify_object(object: RawObject<'_>) -> Incoming<'_> {
  if let Some(cmd) = object.get_str("cmd") {
    if cmd.len() > 5 && cmd.starts_with("NODE_") {
      return Incoming::Internal { cmd, object };
    }
  }
  Incoming::User(Envelope::Object(object))
}

/// `parse_line` for a line already known to be UTF-8.
pub fn parse_text(text: &str) -> Result<Incoming<'_>, MessageError> {
  // JSON's whitespace (a line never holds a raw '\n', but a caller's text may)
  let trimmed = text.trim_start_matches([' ', '\t', '\r', '\n']);
  match trimmed.as_bytes().first() {
    Some(b'{') => {
      let object: RawObject<'_> =
        serde_json::from_str(text).map_err(|e| MessageError::NotJson(e.to_string()))?;
      Ok(classify_object(object))
    }
    Some(b'"') => {
      let raw: &RawValue =
        serde_json::from_str(text).map_err(|e| MessageError::NotJson(e.to_string()))?;
      Ok(Incoming::User(Envelope::Str(Raw(raw.get()))))
    }
    _ => {
      let value: &RawValue =
        serde_json::from_str(text).map_err(|e| MessageError::NotJson(e.to_string()))?;
      let kind = match value.get().as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        _ => "a number",
      };
      Err(MessageError::NotAnObject(kind))
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn user(line: &str) -> Envelope<'_> {
    match parse_line(line.as_bytes()) {
      Ok(Incoming::User(e)) => e,
      other => panic!("expected a user message, got {other:?}"),
    }
  }

  #[test]
  fn an_object_is_a_user_envelope_and_data_is_forwarded_byte_for_byte() {
    let line = r#"{"action":"hi","data":{"n":1.50,"s":"a\nb\u00e9","buf":null},"to":"agent"}"#;
    let e = user(line);
    assert_eq!(e.action().as_deref(), Some("hi"));
    assert_eq!(e.to().as_deref(), Some("agent"));
    let out = String::from_utf8(e.encode("app", "agent")).expect("utf8");
    assert_eq!(
      out,
      "{\"action\":\"hi\",\"data\":{\"n\":1.50,\"s\":\"a\\nb\\u00e9\",\"buf\":null},\"to\":\"agent\",\"from\":\"app\"}\n"
    );
  }

  #[test]
  fn splicing_gives_the_same_bytes_as_reencoding() {
    for line in [
      r#"{"action":"hi","data":{"n":1.50,"s":"a\nb"},"to":"agent"}"#,
      r#"{"from":"master","action":"x"}"#,
      r#"{"action":"y","data":[1,2,{"to":"nested"}],"receiverPid":"12","to":"app","from":"parent"}"#,
      r#"{}"#,
      r#"{"k\u00e9":"v","to":null}"#,
      r#"{"a":1,"a":2,"to":"app"}"#,
    ] {
      let env = user(line);
      let mut spliced = Vec::new();
      env.encode_spliced(line, &mut spliced, "app", "agent");
      let reencoded = env.encode("app", "agent");
      // the same members, values and key order (escapes in keys may differ)
      let members = |bytes: &[u8]| -> Vec<(String, serde_json::Value)> {
        let text = std::str::from_utf8(bytes).expect("utf8");
        let obj: RawObject<'_> = serde_json::from_str(text.trim_end()).expect("json");
        let mut seen: Vec<(String, serde_json::Value)> = Vec::new();
        for (k, v) in obj.iter() {
          let v: serde_json::Value = serde_json::from_str(v.get()).expect("value");
          match seen.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v,
            None => seen.push((k.to_owned(), v)),
          }
        }
        seen
      };
      assert_eq!(members(&spliced), members(&reencoded), "{line}");
      assert!(spliced.ends_with(b"}\n"));
    }
  }

  #[test]
  fn a_string_becomes_action_and_data() {
    let e = user("\"sticky\\u2028\"");
    let out = String::from_utf8(e.encode("agent", "app")).expect("utf8");
    assert_eq!(
      out,
      "{\"action\":\"sticky\\u2028\",\"data\":\"sticky\\u2028\",\"from\":\"agent\",\"to\":\"app\"}\n"
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid json");
    assert_eq!(v["action"], "sticky\u{2028}");
  }

  #[test]
  fn a_spoofed_from_is_overwritten_in_place() {
    let e = user(r#"{"from":"master","action":"x"}"#);
    assert_eq!(
      e.encode("app", "agent"),
      b"{\"from\":\"app\",\"action\":\"x\",\"to\":\"agent\"}\n".to_vec()
    );
  }

  #[test]
  fn a_falsy_to_is_no_to_and_a_truthy_non_string_to_names_nobody() {
    for line in [
      r#"{"to":""}"#,
      r#"{"to":null}"#,
      r#"{"to":false}"#,
      r#"{"to":0}"#,
      r#"{"a":1}"#,
    ] {
      assert_eq!(user(line).to(), None, "{line}");
    }
    assert_eq!(user(r#"{"to":1}"#).to().as_deref(), Some("?"));
    assert_eq!(user(r#"{"to":{}}"#).to().as_deref(), Some("?"));
    assert_eq!(user(r#"{"to":"app"}"#).to().as_deref(), Some("app"));
  }

  #[test]
  fn node_internal_messages_are_kept_apart() {
    match parse_line(br#"{"cmd":"NODE_CLUSTER","act":"online","seq":0}"#) {
      Ok(Incoming::Internal { cmd, object }) => {
        assert_eq!(cmd, "NODE_CLUSTER");
        assert_eq!(object.get_str("act").as_deref(), Some("online"));
      }
      other => panic!("{other:?}"),
    }
    // "NODE_" alone is not internal (Node requires more than five characters).
    assert!(matches!(
      parse_line(br#"{"cmd":"NODE_"}"#),
      Ok(Incoming::User(_))
    ));
    assert!(matches!(
      parse_line(br#"{"cmd":"node_x"}"#),
      Ok(Incoming::User(_))
    ));
  }

  #[test]
  fn egg4_reads_receiver_worker_id_first() {
    let both = user(r#"{"receiverPid":"307","receiverWorkerId":"200"}"#);
    assert_eq!(both.receiver(false), Some(ReceiverPid::Pid(307)));
    assert_eq!(both.receiver(true), Some(ReceiverPid::Pid(200)));
    // a falsy receiverWorkerId names nobody in egg 4, even with a receiverPid
    let falsy = user(r#"{"receiverPid":"307","receiverWorkerId":""}"#);
    assert_eq!(falsy.receiver(true), None);
    assert_eq!(falsy.receiver(false), Some(ReceiverPid::Pid(307)));
    // null is absent: receiverPid decides
    let null = user(r#"{"receiverPid":"307","receiverWorkerId":null}"#);
    assert_eq!(null.receiver(true), Some(ReceiverPid::Pid(307)));
    assert_eq!(
      user(r#"{"receiverWorkerId":"9"}"#).receiver(true),
      Some(ReceiverPid::Pid(9))
    );
    assert_eq!(user(r#"{"action":"a"}"#).receiver(true), None);
  }

  #[test]
  fn receiver_pid_accepts_strings_numbers_and_the_egg4_alias() {
    assert_eq!(
      user(r#"{"receiverPid":"123"}"#).receiver_pid(),
      Some(ReceiverPid::Pid(123))
    );
    assert_eq!(
      user(r#"{"receiverPid":123}"#).receiver_pid(),
      Some(ReceiverPid::Pid(123))
    );
    assert_eq!(
      user(r#"{"receiverWorkerId":"7"}"#).receiver_pid(),
      Some(ReceiverPid::Pid(7))
    );
    assert_eq!(
      user(r#"{"receiverPid":"abc"}"#).receiver_pid(),
      Some(ReceiverPid::Unknown)
    );
    assert_eq!(user(r#"{"receiverPid":""}"#).receiver_pid(), None);
    assert_eq!(user(r#"{"receiverPid":0}"#).receiver_pid(), None);
    assert_eq!(user(r#"{"receiverPid":null}"#).receiver_pid(), None);
    let deep = format!("{{\"receiverPid\":{}{}}}", "[".repeat(500), "]".repeat(500));
    assert_eq!(user(&deep).receiver_pid(), Some(ReceiverPid::Unknown));
  }

  #[test]
  fn garbage_is_refused_with_a_reason() {
    assert_eq!(parse_line(b"\xff\xfe").err(), Some(MessageError::NotUtf8));
    assert!(matches!(
      parse_line(b"{\"a\":"),
      Err(MessageError::NotJson(_))
    ));
    assert!(matches!(
      parse_line(b"{\"a\":1} trailing"),
      Err(MessageError::NotJson(_))
    ));
    assert_eq!(
      parse_line(b"42").err(),
      Some(MessageError::NotAnObject("a number"))
    );
    assert_eq!(
      parse_line(b"[1]").err(),
      Some(MessageError::NotAnObject("an array"))
    );
    assert_eq!(
      parse_line(b"null").err(),
      Some(MessageError::NotAnObject("null"))
    );
  }

  #[test]
  fn leading_json_whitespace_of_any_kind_is_skipped() {
    // found by the scanner/serde property test: "\n{}" was taken for "a number"
    for text in ["\n{}", " \t\r\n{}"] {
      assert!(
        matches!(parse_text(text), Ok(Incoming::User(Envelope::Object(_)))),
        "{text:?}"
      );
    }
  }

  #[test]
  fn deep_nesting_inside_data_is_forwarded() {
    let depth = 10_000;
    let line = format!(
      "{{\"action\":\"deep\",\"data\":{}{}}}",
      "[".repeat(depth),
      "]".repeat(depth)
    );
    let e = user(&line);
    let out = e.encode("app", "agent");
    assert!(out.len() > 2 * depth);
  }

  #[test]
  fn unicode_keys_and_separators_survive_reencoding() {
    let e = user("{\"ké\\u2028y\":\"v\u{2029}\",\"action\":\"a\"}");
    let out = e.encode("parent", "master");
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["ké\u{2028}y"], "v\u{2029}");
    assert_eq!(v["to"], "master");
  }
}
