//! Property tests of the pure pieces of the core, through the public API only:
//!
//! * `LineDecoder`: arbitrary bytes in arbitrary chunks never panic, memory
//!   stays bounded, and how a stream is chunked never changes what comes out
//!   (compared with a one-line model: split on `\n`, a line longer than the cap
//!   is one `TooBig`, a partial line only shows once it is over the cap).
//! * `parse_line` + `Envelope::encode` (and `encode_spliced`, the relay path, which must give
//!   the same): any line never panics; for an object,
//!   the encoded line is valid JSON holding the same members (JS semantics for
//!   duplicate keys: first position, last value) plus `from` and `to`, every
//!   other member's bytes copied untouched, new keys appended `from` then `to`.
//! * `router::route`: matches a model written from DESIGN.md's table.
//!
//! Case counts stay modest (the suite runs under `npm test` on a shared box);
//! `PROPTEST_CASES=10000 cargo test --release --test proptest_framing` digs deeper.

use egg_cluster_rs::ipc::codec::{Frame, LineDecoder};
use egg_cluster_rs::ipc::json;
use egg_cluster_rs::ipc::message::{parse_line, parse_text, Envelope, Incoming, ReceiverPid};
use egg_cluster_rs::router::{route, Destination, Sender};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// `cases` by default; PROPTEST_CASES, when set, for every property.
fn config(cases: u32) -> ProptestConfig {
  let cases = std::env::var("PROPTEST_CASES")
    .ok()
    .and_then(|v| v.parse().ok())
    .unwrap_or(cases);
  ProptestConfig {
    cases,
    ..ProptestConfig::default()
  }
}

// ------------------------------------------------------------------ framing

#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
  Line(Vec<u8>),
  TooBig,
}

/// Feeds `chunks` in order; lines and TooBig markers (its `seen` depends on
/// the chunking, so it is not compared).
fn decode(max: usize, chunks: &[&[u8]]) -> (Vec<Out>, usize) {
  let mut d = LineDecoder::new(max);
  let mut out = Vec::new();
  let mut peak_pending = 0;
  for chunk in chunks {
    d.feed(chunk, |f| match f {
      Frame::Line(l) => out.push(Out::Line(l.to_vec())),
      Frame::TooBig { seen } => {
        assert!(seen > max, "TooBig with seen {seen} <= max {max}");
        out.push(Out::TooBig)
      }
    });
    peak_pending = peak_pending.max(d.pending());
  }
  (out, peak_pending)
}

/// The model: what a decoder must hand out for the whole stream.
fn model(max: usize, stream: &[u8]) -> Vec<Out> {
  let max = max.max(1);
  let mut out = Vec::new();
  let mut parts: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
  let tail = parts.pop().unwrap_or(&[]);
  for line in parts {
    out.push(if line.len() > max {
      Out::TooBig
    } else {
      Out::Line(line.to_vec())
    });
  }
  // an unterminated line is reported as soon as it is over the cap
  if tail.len() > max {
    out.push(Out::TooBig);
  }
  out
}

/// Cuts `stream` at the given fractions.
fn cut<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
  let mut points: Vec<usize> = cuts
    .iter()
    .map(|c| {
      if stream.is_empty() {
        0
      } else {
        c % (stream.len() + 1)
      }
    })
    .collect();
  points.push(0);
  points.push(stream.len());
  points.sort_unstable();
  points.dedup();
  points.windows(2).map(|w| &stream[w[0]..w[1]]).collect()
}

/// Lines of bytes rich in newlines, quotes, braces, UTF-8 and invalid bytes.
fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
  prop_oneof![
    prop::collection::vec(any::<u8>(), 0..64),
    prop::collection::vec(
      prop_oneof![
        Just(b'\n'),
        Just(b'{'),
        Just(b'}'),
        Just(b'"'),
        Just(b'\\'),
        Just(0xe2u8),
        Just(0x80u8),
        Just(0xa8u8),
        Just(0xffu8),
        b'a'..=b'z'
      ],
      0..48
    ),
    "[ -~\u{80}-\u{10ffff}]{0,24}".prop_map(|s| s.into_bytes()),
  ]
}

fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
  prop::collection::vec(line_bytes(), 0..12).prop_map(|lines| lines.join(&b'\n'))
}

proptest! {
  #![proptest_config(config(256))]

  /// Any bytes in any chunks: no panic, every line handed out is within the
  /// cap and holds no `\n`, and the buffered partial line never exceeds it.
  #[test]
  fn arbitrary_chunks_never_panic_and_stay_bounded(
    chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..20),
    max in 1usize..128,
  ) {
    let slices: Vec<&[u8]> = chunks.iter().map(|c| c.as_slice()).collect();
    let (out, peak) = decode(max, &slices);
    prop_assert!(peak <= max, "pending {peak} > cap {max}");
    for o in &out {
      if let Out::Line(l) = o {
        prop_assert!(l.len() <= max);
        prop_assert!(!l.contains(&b'\n'));
        // what the supervisor does next with a line: never panics either
        if let Ok(Incoming::User(env)) = parse_line(l) {
          let _ = env.encode("app", "agent");
          let _ = env.receiver_pid();
        }
      }
    }
  }

  /// The chunking of a stream never changes the decoded lines.
  #[test]
  fn chunking_never_changes_the_lines(
    stream in stream_bytes(),
    cuts in prop::collection::vec(any::<usize>(), 0..16),
    max in prop_oneof![1usize..8, 8usize..64, Just(1usize << 20)],
  ) {
    let whole = decode(max, &[&stream]).0;
    let chunked = decode(max, &cut(&stream, &cuts)).0;
    let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
    let by_byte = decode(max, &bytewise).0;
    let want = model(max, &stream);
    prop_assert_eq!(&whole, &want);
    prop_assert_eq!(&chunked, &want);
    prop_assert_eq!(&by_byte, &want);
  }

  /// Feeding through `next_frame` by hand (as the reader does) gives what
  /// `feed` gives, and a decoder keeps working after an oversized line.
  #[test]
  fn next_frame_and_feed_agree(stream in stream_bytes(), max in 1usize..40) {
    let mut d = LineDecoder::new(max);
    let mut out = Vec::new();
    let mut data: &[u8] = &stream;
    while let Some(f) = d.next_frame(&mut data) {
      out.push(match f {
        Frame::Line(l) => Out::Line(l.to_vec()),
        Frame::TooBig { .. } => Out::TooBig,
      });
    }
    prop_assert!(data.is_empty());
    prop_assert_eq!(out, model(max, &stream));
  }
}

// ------------------------------------------------------------------ envelopes

fn json_string() -> impl Strategy<Value = String> {
  prop_oneof![
    "[a-z]{0,8}",
    "\\PC{0,12}",
    Just("\u{2028}\u{2029}".to_string()),
    Just("quote \" backslash \\ nl \n nul \u{0}".to_string()),
    Just("😀👨‍👩‍👧".to_string()),
    Just("from".to_string()),
    Just("to".to_string()),
  ]
}

fn json_value() -> impl Strategy<Value = Value> {
  let leaf = prop_oneof![
    Just(Value::Null),
    any::<bool>().prop_map(Value::Bool),
    any::<i64>().prop_map(Value::from),
    any::<f64>()
      .prop_filter("finite", |f| f.is_finite())
      .prop_map(Value::from),
    json_string().prop_map(Value::String),
  ];
  leaf.prop_recursive(4, 32, 6, |inner| {
    prop_oneof![
      prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
      prop::collection::vec((json_string(), inner), 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect())),
    ]
  })
}

fn key() -> impl Strategy<Value = String> {
  prop_oneof![
    4 => prop_oneof![
      Just("action".to_string()),
      Just("data".to_string()),
      Just("to".to_string()),
      Just("from".to_string()),
      Just("receiverPid".to_string()),
      Just("cmd".to_string()),
    ],
    3 => json_string(),
  ]
}

/// A top-level object as members in order (duplicates allowed), written with
/// optional whitespace and optional `\u` escapes in the keys.
#[derive(Debug, Clone)]
struct Line {
  members: Vec<(String, Value)>,
  text: String,
}

fn escape_key_fully(k: &str) -> String {
  let mut s = String::from("\"");
  for unit in k.encode_utf16() {
    s.push_str(&format!("\\u{unit:04x}"));
  }
  s.push('"');
  s
}

fn object_line() -> impl Strategy<Value = Line> {
  (
    prop::collection::vec((key(), json_value(), any::<bool>()), 0..8),
    prop_oneof![Just(""), Just(" "), Just("\t"), Just("\r")],
  )
    .prop_map(|(members, ws)| {
      let mut text = format!("{ws}{{");
      for (i, (k, v, escaped)) in members.iter().enumerate() {
        if i > 0 {
          text.push(',');
        }
        text.push_str(ws);
        if *escaped {
          text.push_str(&escape_key_fully(k));
        } else {
          text.push_str(&serde_json::to_string(k).unwrap());
        }
        text.push_str(ws);
        text.push(':');
        text.push_str(&serde_json::to_string(v).unwrap());
      }
      text.push_str(ws);
      text.push('}');
      Line {
        members: members.into_iter().map(|(k, v, _)| (k, v)).collect(),
        text,
      }
    })
}

/// JS's view of the members: first position of each key, last value.
fn js_members(members: &[(String, Value)]) -> Vec<(String, Value)> {
  let mut out: Vec<(String, Value)> = Vec::new();
  for (k, v) in members {
    match out.iter_mut().find(|(x, _)| x == k) {
      Some(slot) => slot.1 = v.clone(),
      None => out.push((k.clone(), v.clone())),
    }
  }
  out
}

/// The members of an encoded line, in order, values as raw text.
fn raw_members(encoded: &[u8]) -> Vec<(String, String)> {
  match parse_line(encoded) {
    Ok(Incoming::User(Envelope::Object(o))) | Ok(Incoming::Internal { object: o, .. }) => o
      .iter()
      .map(|(k, v)| (k.to_string(), v.get().to_string()))
      .collect(),
    other => panic!("the encoded line is not an object: {other:?}"),
  }
}

fn is_internal(members: &[(String, Value)]) -> bool {
  js_members(members).iter().any(|(k, v)| {
    k == "cmd" && matches!(v, Value::String(s) if s.len() > 5 && s.starts_with("NODE_"))
  })
}

const SENDERS: [&str; 4] = ["master", "parent", "agent", "app"];

proptest! {
  #![proptest_config(config(256))]

  /// encode(parse(line)) is valid JSON with the same members plus from/to.
  #[test]
  fn encode_keeps_every_member_and_adds_from_and_to(
    line in object_line(),
    from in 0usize..4,
    to in prop_oneof![Just("app".to_string()), Just("agent".to_string()), json_string()],
  ) {
    let from = SENDERS[from];
    let parsed = parse_line(line.text.as_bytes());
    if is_internal(&line.members) {
      prop_assert!(matches!(parsed, Ok(Incoming::Internal { .. })), "{parsed:?}");
      return Ok(());
    }
    let env = match parsed {
      Ok(Incoming::User(env)) => env,
      other => return Err(TestCaseError::fail(format!("{other:?} for {}", line.text))),
    };
    let encoded = env.encode(from, &to);
    prop_assert_eq!(encoded.last(), Some(&b'\n'));
    prop_assert_eq!(encoded.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
    let body = &encoded[..encoded.len() - 1];
    let value: Value = serde_json::from_slice(body)
      .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {}", String::from_utf8_lossy(body))))?;

    // same members (JS semantics) with from/to set
    let mut want = js_members(&line.members);
    for (k, v) in [("from", from), ("to", to.as_str())] {
      match want.iter_mut().find(|(x, _)| x == k) {
        Some(slot) => slot.1 = Value::String(v.to_string()),
        None => want.push((k.to_string(), Value::String(v.to_string()))),
      }
    }
    // values compared as parsed from the source text (float text round trips
    // are serde_json's business, not ours): duplicate keys keep the last value
    let mut want_value: Value = serde_json::from_str(&line.text).unwrap();
    let obj = want_value.as_object_mut().unwrap();
    obj.insert("from".into(), Value::String(from.to_string()));
    obj.insert("to".into(), Value::String(to.clone()));
    prop_assert_eq!(&value, &want_value);

    // JS property order, and every other member's bytes copied untouched
    let got = raw_members(body);
    let got_keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    let want_keys: Vec<&str> = want.iter().map(|(k, _)| k.as_str()).collect();
    prop_assert_eq!(got_keys, want_keys);
    let source = raw_members(line.text.as_bytes());
    for (k, raw) in &got {
      if k == "from" || k == "to" {
        continue;
      }
      let last = source.iter().rev().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
      prop_assert_eq!(Some(raw.as_str()), last, "member {} re-encoded", k);
    }
  }

  /// The relay path (`encode_spliced`: the original bytes, only from/to replaced) gives what
  /// `encode` gives: the same members with the same values, in the same order, one line.
  #[test]
  fn spliced_encoding_matches_encode(
    line in object_line(),
    trailing in prop_oneof![Just(""), Just(" "), Just("\t \r")],
    from in 0usize..4,
    to in prop_oneof![Just("app".to_string()), Just("agent".to_string()), json_string()],
  ) {
    let source = format!("{}{trailing}", line.text);
    let env = match parse_line(source.as_bytes()) {
      Ok(Incoming::User(env)) => env,
      Ok(Incoming::Internal { .. }) => return Ok(()),
      other => return Err(TestCaseError::fail(format!("{other:?} for {source}"))),
    };
    let from = SENDERS[from];
    let encoded = env.encode(from, &to);
    let mut spliced = Vec::new();
    env.encode_spliced(&source, &mut spliced, from, &to);
    prop_assert_eq!(spliced.last(), Some(&b'\n'));
    prop_assert_eq!(spliced.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
    let a: Value = serde_json::from_slice(&encoded[..encoded.len() - 1]).unwrap();
    let b: Value = serde_json::from_slice(&spliced[..spliced.len() - 1])
      .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {}", String::from_utf8_lossy(&spliced))))?;
    prop_assert_eq!(&a, &b);
    let keys = |bytes: &[u8]| raw_members(&bytes[..bytes.len() - 1]).into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    prop_assert_eq!(keys(&encoded), keys(&spliced));
  }

  /// A bare string s is {action: s, data: s, from, to}.
  #[test]
  fn a_string_line_becomes_action_and_data(s in json_string(), from in 0usize..4) {
    let text = serde_json::to_string(&s).unwrap();
    let env = match parse_line(text.as_bytes()) {
      Ok(Incoming::User(env)) => env,
      other => return Err(TestCaseError::fail(format!("{other:?}"))),
    };
    let action = env.action();
    prop_assert_eq!(action.as_deref(), Some(s.as_str()));
    let encoded = env.encode(SENDERS[from], "app");
    let value: Value = serde_json::from_slice(&encoded[..encoded.len() - 1]).unwrap();
    prop_assert_eq!(value, serde_json::json!({ "action": s, "data": s, "from": SENDERS[from], "to": "app" }));
  }

  /// Any bytes as a line: parse never panics, and what it accepts encodes to
  /// valid JSON.
  #[test]
  fn arbitrary_lines_never_panic(line in line_bytes()) {
    if let Ok(Incoming::User(env)) = parse_line(&line) {
      let _ = env.to();
      let _ = env.action();
      let _ = env.receiver_pid();
      let encoded = env.encode("app", "agent");
      prop_assert!(serde_json::from_slice::<Value>(&encoded[..encoded.len() - 1]).is_ok());
      // the relay path on the same line
      let source = std::str::from_utf8(&line).expect("parse_line accepted it");
      let mut spliced = Vec::new();
      env.encode_spliced(source, &mut spliced, "app", "agent");
      prop_assert!(serde_json::from_slice::<Value>(&spliced[..spliced.len() - 1]).is_ok());
    }
  }

  /// Non-objects (numbers, arrays, null, booleans) are refused, never routed.
  #[test]
  fn non_objects_are_refused(v in json_value()) {
    let text = serde_json::to_string(&v).unwrap();
    let result = parse_line(text.as_bytes());
    match &v {
      Value::Object(_) | Value::String(_) => prop_assert!(result.is_ok()),
      _ => prop_assert!(result.is_err(), "{text} was accepted"),
    }
  }
}

/// Deep nesting (10k and 1M levels) anywhere in a line: no panic, no stack
/// overflow; nesting in `data` is forwarded byte for byte.
#[test]
fn deep_nesting_never_overflows_the_stack() {
  for depth in [10_000usize, 1_000_000] {
    let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let line = format!("{{\"action\":\"deep\",\"data\":{deep}}}");
    let env = match parse_line(line.as_bytes()) {
      Ok(Incoming::User(env)) => env,
      other => panic!("{:?}", other.map(|_| ())),
    };
    let out = env.encode("app", "agent");
    let members = raw_members(&out[..out.len() - 1]);
    assert_eq!(members[1].1, deep);

    // in receiverPid (decoded to find the pid) and `to`: refused or ignored, never a crash
    let line = format!("{{\"action\":\"deep\",\"receiverPid\":{deep},\"to\":{deep}}}");
    if let Ok(Incoming::User(env)) = parse_line(line.as_bytes()) {
      let _ = env.receiver_pid();
      // a truthy non-string `to` names nobody (egg-cluster drops it)
      let to = env.to();
      assert!(
        !matches!(to.as_deref(), Some("master" | "parent" | "app" | "agent")),
        "{to:?}"
      );
    }
    // at the top level: not an object
    assert!(parse_line(deep.as_bytes()).is_err());
    // unbalanced
    assert!(parse_line(format!("{{\"a\":{}", "[".repeat(depth)).as_bytes()).is_err());
    let obj_deep = format!("{}{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    if let Ok(Incoming::User(env)) = parse_line(obj_deep.as_bytes()) {
      let _ = env.encode("app", "agent");
    }
  }
}

// ------------------------------------------------------------------ scanner

/// A JSON text with a few bytes inserted, deleted or replaced by ones that
/// matter to a JSON parser.
fn mutated_json() -> impl Strategy<Value = Vec<u8>> {
  let base = prop_oneof![
    object_line().prop_map(|l| l.text.into_bytes()),
    json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
  ];
  let byte = prop_oneof![
    prop::sample::select(b"{}[],:\"\\ \t\r0123456789.eE+-truefalsn/u".to_vec()),
    Just(0x01u8),
    Just(0x1fu8),
    Just(0x7fu8),
    Just(0x80u8),
    Just(0xc3u8),
    Just(0xe2u8),
    Just(0xffu8),
    any::<u8>(),
  ];
  let edit = (0usize..3, any::<prop::sample::Index>(), byte);
  (base, prop::collection::vec(edit, 0..4)).prop_map(|(mut text, edits)| {
    for (kind, at, b) in edits {
      let i = at.index(text.len() + 1);
      match kind {
        0 => text.insert(i, b),
        1 if i < text.len() => {
          text.remove(i);
        }
        _ if i < text.len() => text[i] = b,
        _ => text.push(b),
      }
    }
    text
  })
}

/// What a parse gave, comparable: the kind and the members as text.
fn outcome(parsed: Result<Incoming<'_>, egg_cluster_rs::ipc::message::MessageError>) -> String {
  match parsed {
    Ok(Incoming::User(Envelope::Object(o))) => format!("user {:?}", o.iter().collect::<Vec<_>>()),
    Ok(Incoming::User(Envelope::Str(s))) => format!("str {s:?}"),
    Ok(Incoming::Internal { cmd, object }) => {
      format!("internal {cmd} {:?}", object.iter().collect::<Vec<_>>())
    }
    Err(e) => format!("error {e:?}")
      .split('(')
      .next()
      .unwrap_or("")
      .to_string(),
  }
}

proptest! {
  #![proptest_config(config(2048))]

  /// The scanner never accepts what serde_json refuses, finds the same
  /// members, says "ASCII" only of ASCII lines, and refuses a valid object
  /// only when a key may hold an escape.
  #[test]
  fn the_scanner_agrees_with_serde_json(text in prop_oneof![mutated_json(), line_bytes()]) {
    let mut spans = Vec::new();
    let scanned = json::scan_object(&text, |k, v| spans.push((k, v)));
    // serde_json as the core uses it: values unparsed (so 1e400 is valid, as for JSON.parse)
    let raw = |bytes: &[u8]| serde_json::from_slice::<Box<serde_json::value::RawValue>>(bytes).ok();
    let serde = raw(&text).map(|v| if v.get().starts_with('{') { "object" } else { "other" });
    match scanned {
      Some(scanned) => {
        prop_assert!(
          serde == Some("object") || (scanned.non_ascii && std::str::from_utf8(&text).is_err()),
          "scanner accepted what serde refuses: {:?}", String::from_utf8_lossy(&text)
        );
        if !scanned.non_ascii {
          prop_assert!(text.is_ascii());
        }
        // the caller's UTF-8 check
        let Ok(line) = std::str::from_utf8(&text) else {
          prop_assert!(serde.is_none());
          return Ok(());
        };
        let ours: Vec<(&str, &str)> = spans.iter().map(|(k, v)| (&line[k.start..k.end], &line[v.start..v.end])).collect();
        let theirs: Vec<(String, String)> = match parse_text(line) {
          Ok(Incoming::User(Envelope::Object(o))) | Ok(Incoming::Internal { object: o, .. }) =>
            o.iter().map(|(k, v)| (k.to_string(), v.get().to_string())).collect(),
          other => return Err(TestCaseError::fail(format!("serde path gave {other:?}"))),
        };
        let theirs: Vec<(&str, &str)> = theirs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        prop_assert_eq!(ours, theirs);
      }
      None => {
        if serde == Some("object") {
          prop_assert!(text.contains(&b'\\'), "a valid object refused: {:?}", String::from_utf8_lossy(&text));
        }
      }
    }
    // any value, as a member
    let wrapped = [&b"{\"k\":"[..], &text, b"}"].concat();
    let wrapped_serde = raw(&wrapped).is_some();
    let ours = json::scan_object(&wrapped, |_, _| {})
      .is_some_and(|s| !s.non_ascii || std::str::from_utf8(&wrapped).is_ok());
    prop_assert_eq!(ours, wrapped_serde, "{:?}", String::from_utf8_lossy(&wrapped));
    // the fast path and the serde path classify every line alike
    let slow = match std::str::from_utf8(&text) {
      Ok(line) => outcome(parse_text(line)),
      Err(_) => outcome(Err(egg_cluster_rs::ipc::message::MessageError::NotUtf8)),
    };
    prop_assert_eq!(outcome(parse_line(&text)), slow);
  }
}

// ------------------------------------------------------------------ routing

const MASTER_PID: u32 = 100;

/// DESIGN.md "Message routing", written out independently.
fn model_route(
  from: Sender,
  to: Option<&str>,
  receiver: Option<ReceiverPid>,
  agent: Option<u32>,
) -> (Option<String>, Destination) {
  if let Some(r) = receiver {
    return match r {
      ReceiverPid::Pid(p) if p == MASTER_PID => (Some("master".into()), Destination::Master),
      ReceiverPid::Pid(p) if Some(p) == agent => (Some("agent".into()), Destination::Agent),
      ReceiverPid::Pid(p) => (Some("app".into()), Destination::AppPid(p)),
      ReceiverPid::Unknown => (Some("app".into()), Destination::Nowhere),
    };
  }
  let to = match (to, from) {
    (Some(t), _) => Some(t.to_string()),
    (None, Sender::Agent) => Some("app".into()),
    (None, Sender::App) => Some("agent".into()),
    (None, Sender::Parent) => Some("master".into()),
    (None, Sender::Master) => None,
  };
  let dest = match to.as_deref() {
    Some("master") => Destination::Master,
    Some("parent") => Destination::Parent,
    Some("agent") => Destination::Agent,
    Some("app") => Destination::Apps,
    _ => Destination::Nowhere,
  };
  (to, dest)
}

fn sender() -> impl Strategy<Value = Sender> {
  prop_oneof![
    Just(Sender::Master),
    Just(Sender::Parent),
    Just(Sender::Agent),
    Just(Sender::App)
  ]
}

fn pid() -> impl Strategy<Value = u32> {
  prop_oneof![
    Just(MASTER_PID),
    Just(200u32),
    Just(300u32),
    Just(301u32),
    any::<u32>()
  ]
}

proptest! {
  #![proptest_config(config(512))]

  #[test]
  fn routing_matches_the_model(
    from in sender(),
    to in prop::option::of(prop_oneof![
      Just("master"), Just("parent"), Just("agent"), Just("app"),
      Just("App"), Just(""), Just("nobody"), Just("apps")
    ]),
    receiver in prop::option::of(prop_oneof![pid().prop_map(ReceiverPid::Pid), Just(ReceiverPid::Unknown)]),
    agent in prop::option::of(pid()),
  ) {
    let r = route(from, to, receiver, MASTER_PID, agent);
    let (want_to, want_dest) = model_route(from, to, receiver, agent);
    prop_assert_eq!(r.to.map(str::to_string), want_to);
    prop_assert_eq!(r.destination, want_dest);
    prop_assert_eq!(Sender::parse(from.as_str()), Some(from));
  }

  /// End to end on the envelope: a line's receiverPid/to, parsed, routed.
  #[test]
  fn parsed_envelopes_route_like_the_model(
    from in sender(),
    to in prop::option::of(prop_oneof![Just("master"), Just("agent"), Just("app"), Just("x")]),
    receiver in prop::option::of(prop_oneof![
      pid().prop_map(Value::from),
      pid().prop_map(|p| Value::String(p.to_string())),
      Just(Value::String(String::new())),
      Just(Value::from(0)),
      Just(Value::Null),
      Just(Value::Bool(false)),
      Just(Value::String("abc".into())),
    ]),
    agent in prop::option::of(pid()),
  ) {
    let mut obj = Map::new();
    obj.insert("action".into(), Value::String("a".into()));
    if let Some(t) = to {
      obj.insert("to".into(), Value::String(t.into()));
    }
    if let Some(r) = &receiver {
      obj.insert("receiverPid".into(), r.clone());
    }
    let text = serde_json::to_string(&Value::Object(obj)).unwrap();
    let env = match parse_line(text.as_bytes()) {
      Ok(Incoming::User(env)) => env,
      other => return Err(TestCaseError::fail(format!("{other:?}"))),
    };
    // JS truthiness decides whether receiverPid counts
    let want_receiver = match &receiver {
      None | Some(Value::Null) | Some(Value::Bool(false)) => None,
      Some(Value::String(s)) if s.is_empty() => None,
      Some(Value::Number(n)) if n.as_u64() == Some(0) => None,
      Some(Value::String(s)) => Some(s.parse::<u32>().map_or(ReceiverPid::Unknown, ReceiverPid::Pid)),
      Some(Value::Number(n)) => Some(ReceiverPid::Pid(n.as_u64().unwrap() as u32)),
      Some(_) => Some(ReceiverPid::Unknown),
    };
    prop_assert_eq!(env.receiver_pid(), want_receiver);
    let to_field = env.to();
    let r = route(from, to_field.as_deref(), env.receiver_pid(), MASTER_PID, agent);
    let (want_to, want_dest) = model_route(from, to, want_receiver, agent);
    prop_assert_eq!(r.to.map(str::to_string), want_to);
    prop_assert_eq!(r.destination, want_dest);
  }
}

// ------------------------------------------------------------------ egg-cluster's `send`, verbatim

/// egg-cluster 2.x `Messenger#send` (lib/utils/messenger.js) on the decoded JSON, with the
/// one documented difference (README: a numeric receiverPid names a pid too):
/// a truthy receiverPid decides `to`; a falsy `to` ('' 0 null false, or absent) takes the
/// sender's default; then only the strings master/parent/app/agent go anywhere.
fn egg_route(
  from: Sender,
  to: Option<&Value>,
  receiver: Option<&Value>,
  agent: Option<u32>,
) -> Destination {
  let truthy = |v: &Value| match v {
    Value::Null => false,
    Value::Bool(b) => *b,
    Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
    Value::String(s) => !s.is_empty(),
    _ => true,
  };
  if let Some(r) = receiver.filter(|r| truthy(r)) {
    let pid = match r {
      Value::String(s) => s.parse::<u32>().ok().filter(|p| p.to_string() == *s),
      Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
      _ => None,
    };
    return match pid {
      Some(p) if p == MASTER_PID => Destination::Master,
      Some(p) if Some(p) == agent => Destination::Agent,
      Some(p) => Destination::AppPid(p),
      None => Destination::Nowhere,
    };
  }
  let to = match to.filter(|t| truthy(t)) {
    Some(Value::String(s)) => s.as_str(),
    Some(_) => return Destination::Nowhere, // a truthy non-string matches no branch
    None => match from {
      Sender::Agent => "app",
      Sender::App => "agent",
      Sender::Parent => "master",
      Sender::Master => return Destination::Nowhere,
    },
  };
  match to {
    "master" => Destination::Master,
    "parent" => Destination::Parent,
    "app" => Destination::Apps,
    "agent" => Destination::Agent,
    _ => Destination::Nowhere,
  }
}

/// The supervisor's path: parse the line, read `to` and `receiverPid`, route.
fn core_route(from: Sender, line: &str, agent: Option<u32>) -> Destination {
  let env = match parse_line(line.as_bytes()) {
    Ok(Incoming::User(env)) => env,
    other => panic!("{line}: {:?}", other.map(|_| ())),
  };
  let to = env.to();
  route(from, to.as_deref(), env.receiver_pid(), MASTER_PID, agent).destination
}

/// Routing of odd `to` / `receiverPid` values matches egg-cluster (these were divergences once).
#[test]
fn to_and_receiver_pid_of_any_json_type_route_as_egg_cluster_does() {
  let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
  let cases: Vec<(Sender, String)> = vec![
    // egg: '' is falsy → the default `to` (app → agent); core: Some("") → nowhere
    (Sender::App, r#"{"action":"a","to":""}"#.into()),
    (Sender::Agent, r#"{"action":"a","to":""}"#.into()),
    // egg: a truthy non-string `to` matches no branch → dropped; core: treated as absent → default
    (Sender::App, r#"{"action":"a","to":42}"#.into()),
    (Sender::App, r#"{"action":"a","to":["agent"]}"#.into()),
    (Sender::Agent, r#"{"action":"a","to":{"x":1}}"#.into()),
    (Sender::App, r#"{"action":"a","to":true}"#.into()),
    // egg: falsy non-strings → default; core agrees
    (Sender::App, r#"{"action":"a","to":0}"#.into()),
    (Sender::App, r#"{"action":"a","to":null}"#.into()),
    // egg: a truthy receiverPid naming no worker → nobody; core: deeper than serde_json's
    // recursion limit it is read as absent → the default destination
    (
      Sender::App,
      format!(r#"{{"action":"a","receiverPid":{deep}}}"#),
    ),
    (
      Sender::Agent,
      format!(r#"{{"action":"a","receiverPid":{deep},"to":"agent"}}"#),
    ),
    (Sender::App, r#"{"action":"a","receiverPid":[1]}"#.into()),
  ];
  let mut wrong = Vec::new();
  for (from, line) in &cases {
    let v: Option<Value> = serde_json::from_str(line).ok();
    let (to, rp) = match &v {
      Some(Value::Object(o)) => (o.get("to").cloned(), o.get("receiverPid").cloned()),
      // too deep for serde_json::Value: a non-empty array, truthy
      _ => (
        line
          .contains("\"to\":\"agent\"")
          .then(|| Value::String("agent".into())),
        Some(Value::Array(vec![Value::Null])),
      ),
    };
    let want = egg_route(*from, to.as_ref(), rp.as_ref(), Some(200));
    let got = core_route(*from, line, Some(200));
    if want != got {
      wrong.push(format!(
        "from {from:?} {}: egg-cluster {want:?}, core {got:?}",
        &line[..line.len().min(60)]
      ));
    }
  }
  assert!(
    wrong.is_empty(),
    "routed unlike egg-cluster:\n  {}",
    wrong.join("\n  ")
  );
}
