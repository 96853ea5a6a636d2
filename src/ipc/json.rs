//! A validating scanner for one line of JSON (RFC 8259, what `JSON.parse`
//! accepts): it checks a whole object and says where its top-level members
//! lie, building nothing and allocating nothing (only nesting deeper than 128
//! levels spills its stack to the heap). It is the relay's hot path: every
//! line a worker sends goes through it once.
//!
//! It only ever answers "valid, here are the members" or "not for me": keys
//! with escapes, anything that is not an object, and every error go to the
//! serde_json parser (`message::parse_text`), which stays the reference and
//! words the errors. So this scanner must never accept a text serde_json
//! refuses (the property tests compare them), and must never panic.

/// A byte range of the scanned line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
  pub start: usize,
  pub end: usize,
}

/// A valid object: whether any byte was outside ASCII (then the caller must
/// still check the line is UTF-8; outside strings such a byte is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
  pub non_ascii: bool,
}

/// Scans `line` as one JSON object (surrounded by optional whitespace) whose
/// keys hold no escapes, calling `on_member(key, value)` for each top-level
/// member in order (`key` without its quotes, `value` the raw value text).
/// None when the line is anything else, valid or not.
pub fn scan_object(line: &[u8], mut on_member: impl FnMut(Span, Span)) -> Option<Scanned> {
  let mut s = Scanner {
    b: line,
    non_ascii: false,
  };
  let mut i = s.ws(0);
  if s.b.get(i) != Some(&b'{') {
    return None;
  }
  i = s.ws(i + 1);
  if s.b.get(i) == Some(&b'}') {
    i += 1;
  } else {
    loop {
      if s.b.get(i) != Some(&b'"') {
        return None;
      }
      let (key_end, escaped) = s.string_end(i + 1)?;
      if escaped {
        return None;
      }
      let key = Span {
        start: i + 1,
        end: key_end - 1,
      };
      i = s.ws(key_end);
      if s.b.get(i) != Some(&b':') {
        return None;
      }
      i = s.ws(i + 1);
      let value_end = s.value_end(i)?;
      on_member(
        key,
        Span {
          start: i,
          end: value_end,
        },
      );
      i = s.ws(value_end);
      match s.b.get(i) {
        Some(b',') => i = s.ws(i + 1),
        Some(b'}') => {
          i += 1;
          break;
        }
        _ => return None,
      }
    }
  }
  (s.ws(i) == s.b.len()).then_some(Scanned {
    non_ascii: s.non_ascii,
  })
}

struct Scanner<'b> {
  b: &'b [u8],
  non_ascii: bool,
}

/// Open containers: a bit per level, set for an object (128 levels inline).
struct Nesting {
  bits: u128,
  depth: usize,
  deeper: Vec<bool>,
}

impl Nesting {
  #[inline]
  fn push(&mut self, object: bool) {
    if self.depth < 128 {
      let bit = 1u128 << self.depth;
      if object {
        self.bits |= bit;
      } else {
        self.bits &= !bit;
      }
    } else {
      self.deeper.push(object);
    }
    self.depth += 1;
  }

  #[inline]
  fn pop(&mut self) {
    if self.depth > 128 {
      self.deeper.pop();
    }
    self.depth = self.depth.saturating_sub(1);
  }

  /// Whether the innermost open container is an object (None: none open).
  #[inline]
  fn top(&self) -> Option<bool> {
    match self.depth {
      0 => None,
      d if d <= 128 => Some(self.bits & (1u128 << (d - 1)) != 0),
      _ => self.deeper.last().copied(),
    }
  }
}

impl Scanner<'_> {
  #[inline]
  fn ws(&self, mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(i) {
      i += 1;
    }
    i
  }

  /// The end of the value starting at `i` (no leading whitespace).
  fn value_end(&mut self, mut i: usize) -> Option<usize> {
    let mut open = Nesting {
      bits: 0,
      depth: 0,
      deeper: Vec::new(),
    };
    loop {
      // a value starts at i
      match *self.b.get(i)? {
        b'"' => i = self.string_end(i + 1)?.0,
        b'{' => {
          i = self.ws(i + 1);
          if self.b.get(i) == Some(&b'}') {
            i += 1;
          } else {
            open.push(true);
            i = self.key_end(i)?;
            continue;
          }
        }
        b'[' => {
          i = self.ws(i + 1);
          if self.b.get(i) == Some(&b']') {
            i += 1;
          } else {
            open.push(false);
            continue;
          }
        }
        b't' => i = self.literal_end(i, b"true")?,
        b'f' => i = self.literal_end(i, b"false")?,
        b'n' => i = self.literal_end(i, b"null")?,
        b'-' | b'0'..=b'9' => i = self.number_end(i)?,
        _ => return None,
      }
      // after a value: close what ends here, then expect the next one
      loop {
        let Some(object) = open.top() else {
          return Some(i);
        };
        i = self.ws(i);
        match (*self.b.get(i)?, object) {
          (b',', true) => {
            let next = self.ws(i + 1);
            i = self.key_end(next)?;
            break;
          }
          (b',', false) => {
            i = self.ws(i + 1);
            break;
          }
          (b'}', true) | (b']', false) => {
            i += 1;
            open.pop();
          }
          _ => return None,
        }
      }
    }
  }

  /// After `"key" :` (and the whitespace that follows) starting at `i`.
  #[inline]
  fn key_end(&mut self, i: usize) -> Option<usize> {
    if self.b.get(i) != Some(&b'"') {
      return None;
    }
    let (end, _) = self.string_end(i + 1)?;
    let i = self.ws(end);
    if self.b.get(i) != Some(&b':') {
      return None;
    }
    Some(self.ws(i + 1))
  }

  #[inline]
  fn literal_end(&self, i: usize, word: &[u8]) -> Option<usize> {
    let end = i + word.len();
    (self.b.get(i..end)? == word).then_some(end)
  }

  #[inline]
  fn digits_end(&self, mut i: usize) -> usize {
    while let Some(b'0'..=b'9') = self.b.get(i) {
      i += 1;
    }
    i
  }

  /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
  #[inline]
  fn number_end(&self, mut i: usize) -> Option<usize> {
    if self.b.get(i) == Some(&b'-') {
      i += 1;
    }
    match *self.b.get(i)? {
      b'0' => i += 1,
      b'1'..=b'9' => i = self.digits_end(i + 1),
      _ => return None,
    }
    if self.b.get(i) == Some(&b'.') {
      let end = self.digits_end(i + 1);
      if end == i + 1 {
        return None;
      }
      i = end;
    }
    if let Some(b'e' | b'E') = self.b.get(i) {
      i += 1;
      if let Some(b'+' | b'-') = self.b.get(i) {
        i += 1;
      }
      let end = self.digits_end(i);
      if end == i {
        return None;
      }
      i = end;
    }
    Some(i)
  }

  /// The index after the closing quote of a string whose body starts at
  /// `i`, and whether it held an escape.
  #[inline]
  fn string_end(&mut self, mut i: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
      i = self.plain_end(i);
      match *self.b.get(i)? {
        b'"' => return Some((i + 1, escaped)),
        b'\\' => {
          escaped = true;
          match *self.b.get(i + 1)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
            b'u' => {
              let hex = self.b.get(i + 2..i + 6)?;
              if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
              }
              i += 6;
            }
            _ => return None,
          }
        }
        // a control character: JSON wants it escaped
        _ => return None,
      }
    }
  }

  /// Skips string bytes that need no attention: all but `"`, `\` and
  /// control characters. Notes bytes outside ASCII.
  #[inline]
  fn plain_end(&mut self, mut i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
      i = self.plain_end_sse2(i);
    }
    while let Some(&c) = self.b.get(i) {
      if c == b'"' || c == b'\\' || c < 0x20 {
        break;
      }
      self.non_ascii |= c >= 0x80;
      i += 1;
    }
    i
  }

  /// `plain_end` 16 bytes at a time, while 16 bytes are left.
  #[cfg(target_arch = "x86_64")]
  #[inline]
  fn plain_end_sse2(&mut self, mut i: usize) -> usize {
    use std::arch::x86_64::{
      __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
      _mm_set1_epi8,
    };
    let b = self.b;
    let mut high = 0;
    // SAFETY: SSE2 is part of the x86_64 baseline, and every load reads the
    // 16 bytes at `i..i + 16`, inside `b` (checked by the loop condition).
    unsafe {
      let quote = _mm_set1_epi8(b'"' as i8);
      let backslash = _mm_set1_epi8(b'\\' as i8);
      let control = _mm_set1_epi8(0x1f);
      while i + 16 <= b.len() {
        let x = _mm_loadu_si128(b.as_ptr().add(i).cast::<__m128i>());
        // bytes <= 0x1f: unsigned max(x, 0x1f) == 0x1f
        let special = _mm_or_si128(
          _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)),
          _mm_cmpeq_epi8(_mm_max_epu8(x, control), control),
        );
        let mask = _mm_movemask_epi8(special) as u32;
        // high bits of the whole block (bytes past a special one included:
        // a false "non-ASCII" only costs a UTF-8 check)
        high |= _mm_movemask_epi8(x);
        if mask != 0 {
          i += mask.trailing_zeros() as usize;
          break;
        }
        i += 16;
      }
    }
    self.non_ascii |= high != 0;
    i
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn members(line: &str) -> Option<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    scan_object(line.as_bytes(), |k, v| {
      out.push((&line[k.start..k.end], &line[v.start..v.end]))
    })?;
    Some(out)
  }

  #[test]
  fn an_object_s_members_are_found_with_their_raw_values() {
    let line = r#" {"action":"hi", "data" : {"n":[1,-2.5e+3,{}],"s":"a\"b\u00e9"},"to":null,"t":true,"f":false} "#;
    assert_eq!(
      members(line),
      Some(vec![
        ("action", r#""hi""#),
        ("data", r#"{"n":[1,-2.5e+3,{}],"s":"a\"b\u00e9"}"#),
        ("to", "null"),
        ("t", "true"),
        ("f", "false"),
      ])
    );
    assert_eq!(members("{}"), Some(vec![]));
  }

  #[test]
  fn invalid_json_is_refused() {
    for line in [
      "",
      "{",
      "{\"a\":}",
      "{\"a\":1,}",
      "{\"a\":[1,]}",
      "{\"a\":01}",
      "{\"a\":1.}",
      "{\"a\":.5}",
      "{\"a\":1e}",
      "{\"a\":-}",
      "{\"a\":+1}",
      "{\"a\":tru}",
      "{\"a\":nul}",
      "{\"a\":\"\u{1}\"}",
      "{\"a\":\"\\x\"}",
      "{\"a\":\"\\u12g4\"}",
      "{\"a\":\"unterminated}",
      "{\"a\":1} x",
      "{\"a\":1}}",
      "{\"a\" 1}",
      "{a:1}",
      "{\"a\":[}",
      "{\"a\":{]}",
      "{\"a\":{\"b\"}}",
      "{\"a\":{\"b\":1,}}",
      "{\"a\":NaN}",
    ] {
      assert_eq!(members(line), None, "{line:?}");
      assert!(
        serde_json::from_str::<serde_json::Value>(line).is_err(),
        "{line:?}"
      );
    }
  }

  #[test]
  fn escaped_keys_and_non_objects_are_left_to_serde() {
    assert_eq!(members(r#"{"\u0061":1}"#), None);
    assert_eq!(members(r#""s""#), None);
    assert_eq!(members("[1]"), None);
  }

  #[test]
  fn bytes_outside_ascii_are_noted_inside_strings_and_refused_outside() {
    let line = "{\"a\":\"x€xxxxxxxxxxxxxxxxxxxxxxxxxxxx\",\"b\":\"😀\"}";
    let scanned = scan_object(line.as_bytes(), |_, _| {});
    assert_eq!(scanned, Some(Scanned { non_ascii: true }));
    assert_eq!(
      scan_object(b"{\"a\":\"plain ascii\"}", |_, _| {}),
      Some(Scanned { non_ascii: false })
    );
    assert_eq!(scan_object("{\"a\":1€}".as_bytes(), |_, _| {}), None);
  }

  #[test]
  fn deep_nesting_is_scanned_without_recursion() {
    let depth = 100_000;
    let line = format!(
      "{{\"d\":{}0{}}}",
      "[{\"k\":".repeat(depth),
      "}]".repeat(depth)
    );
    assert_eq!(members(&line).map(|m| m.len()), Some(1));
    let unbalanced = format!("{{\"d\":{}{}}}", "[".repeat(300), "]".repeat(299));
    assert_eq!(members(&unbalanced), None);
  }

  #[test]
  fn a_special_byte_is_found_at_every_offset_of_a_block() {
    for n in 0..40 {
      for special in ["\\n", "\"", "\u{1}"] {
        let line = format!(
          "{{\"a\":\"{}{special}{}\"}}",
          "x".repeat(n),
          "y".repeat(n % 7)
        );
        let ours = members(&line).is_some();
        let serde = serde_json::from_str::<serde_json::Value>(&line).is_ok();
        assert_eq!(ours, serde, "{line:?}");
      }
    }
  }
}
