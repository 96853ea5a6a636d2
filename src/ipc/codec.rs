//! Line framing of Node's json serialization: one JSON text per `\n`-terminated
//! line. The decoder is bounded: a line longer than `max_line` is discarded as
//! it streams in (never buffered whole) and reported once. It never splits
//! UTF-8: `\n` cannot occur inside a multi-byte sequence.

/// What the decoder hands out for each line.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
  /// A complete line without its `\n`.
  Line(&'a [u8]),
  /// A line exceeded the limit; `seen` bytes were discarded so far. Reported
  /// once per oversized line, as soon as the limit is crossed.
  TooBig { seen: usize },
}

#[derive(Debug)]
pub struct LineDecoder {
  buf: Vec<u8>,
  max_line: usize,
  /// Bytes of an oversized line discarded so far (None when not discarding).
  discarding: Option<usize>,
  /// `buf` was handed out as a line and is cleared on the next call.
  emitted_buf: bool,
}

impl LineDecoder {
  pub fn new(max_line: usize) -> Self {
    LineDecoder {
      buf: Vec::new(),
      max_line: max_line.max(1),
      discarding: None,
      emitted_buf: false,
    }
  }

  /// Bytes of a partial line waiting for its end.
  pub fn pending(&self) -> usize {
    if self.emitted_buf {
      0
    } else {
      self.buf.len()
    }
  }

  /// Takes the next frame out of `data` (advancing it), or None when `data`
  /// is used up (a partial line stays buffered for the next read). Lines that
  /// arrive whole in `data` are handed out without a copy.
  pub fn next_frame<'s, 'd: 's>(&'s mut self, data: &mut &'d [u8]) -> Option<Frame<'s>> {
    if self.emitted_buf {
      self.emitted_buf = false;
      self.buf.clear();
      if self.buf.capacity() > 1 << 20 {
        self.buf = Vec::new();
      }
    }
    loop {
      if data.is_empty() {
        return None;
      }
      let newline = memchr(b'\n', data);
      if let Some(seen) = self.discarding {
        match newline {
          Some(i) => {
            self.discarding = None;
            *data = &data[i + 1..];
            continue;
          }
          None => {
            self.discarding = Some(seen + data.len());
            *data = &[];
            return None;
          }
        }
      }
      match newline {
        Some(i) => {
          let line = &data[..i];
          *data = &data[i + 1..];
          if self.buf.is_empty() {
            if line.len() > self.max_line {
              return Some(Frame::TooBig { seen: line.len() });
            }
            return Some(Frame::Line(line));
          }
          if self.buf.len() + line.len() > self.max_line {
            let seen = self.buf.len() + line.len();
            self.buf = Vec::new();
            return Some(Frame::TooBig { seen });
          }
          self.buf.extend_from_slice(line);
          self.emitted_buf = true;
          return Some(Frame::Line(&self.buf));
        }
        None => {
          let rest = std::mem::take(data);
          if self.buf.len() + rest.len() > self.max_line {
            let seen = self.buf.len() + rest.len();
            self.buf = Vec::new();
            self.discarding = Some(seen);
            return Some(Frame::TooBig { seen });
          }
          self.buf.extend_from_slice(rest);
          return None;
        }
      }
    }
  }

  /// Feeds a whole read, calling `on_frame` for each frame.
  pub fn feed(&mut self, mut data: &[u8], mut on_frame: impl FnMut(Frame<'_>)) {
    loop {
      let Some(frame) = self.next_frame(&mut data) else {
        return;
      };
      on_frame(frame);
    }
  }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
  memchr::memchr(needle, haystack)
}

#[cfg(test)]
mod tests {
  use super::*;

  fn lines_of(decoder: &mut LineDecoder, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, usize>> {
    let mut out = Vec::new();
    for chunk in chunks {
      decoder.feed(chunk, |frame| match frame {
        Frame::Line(l) => out.push(Ok(l.to_vec())),
        Frame::TooBig { seen } => out.push(Err(seen)),
      });
    }
    out
  }

  #[test]
  fn many_lines_in_one_read_come_out_in_order() {
    let mut d = LineDecoder::new(1024);
    let out = lines_of(&mut d, &[b"{\"a\":1}\n{\"b\":2}\n\"s\"\n"]);
    assert_eq!(
      out,
      vec![
        Ok(b"{\"a\":1}".to_vec()),
        Ok(b"{\"b\":2}".to_vec()),
        Ok(b"\"s\"".to_vec())
      ]
    );
    assert_eq!(d.pending(), 0);
  }

  #[test]
  fn a_line_split_across_reads_is_joined() {
    let mut d = LineDecoder::new(1024);
    let out = lines_of(
      &mut d,
      &[b"{\"act", b"ion\":", b"\"hi\"}\n{\"x\"", b":1}\n"],
    );
    assert_eq!(
      out,
      vec![
        Ok(b"{\"action\":\"hi\"}".to_vec()),
        Ok(b"{\"x\":1}".to_vec())
      ]
    );
  }

  #[test]
  fn byte_by_byte_feeding_gives_the_same_lines() {
    let input = "{\"action\":\"héllo ✓ 😀\",\"data\":\"a\u{2028}b\u{2029}c\"}\n[1,2]\n".as_bytes();
    let mut d = LineDecoder::new(1024);
    let chunks: Vec<&[u8]> = input.chunks(1).collect();
    let out = lines_of(&mut d, &chunks);
    assert_eq!(out.len(), 2);
    let first = String::from_utf8(out[0].clone().expect("line")).expect("utf8 intact");
    assert!(first.contains("😀") && first.contains('\u{2028}') && first.contains('\u{2029}'));
    assert_eq!(out[1], Ok(b"[1,2]".to_vec()));
  }

  #[test]
  fn multibyte_utf8_split_at_every_position_survives() {
    let text = "{\"s\":\"€😀\"}\n".as_bytes();
    for cut in 1..text.len() {
      let mut d = LineDecoder::new(1024);
      let out = lines_of(&mut d, &[&text[..cut], &text[cut..]]);
      assert_eq!(
        out,
        vec![Ok(text[..text.len() - 1].to_vec())],
        "cut at {cut}"
      );
    }
  }

  #[test]
  fn a_ten_mib_line_passes_under_the_default_cap() {
    let mut line = vec![b'"'];
    line.extend(std::iter::repeat_n(b'x', 10 << 20));
    line.extend_from_slice(b"\"\n");
    let mut d = LineDecoder::new(64 << 20);
    let chunks: Vec<&[u8]> = line.chunks(65536).collect();
    let out = lines_of(&mut d, &chunks);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].as_ref().map(|l| l.len()), Ok((10 << 20) + 2));
  }

  #[test]
  fn an_oversized_line_is_reported_once_and_the_next_line_survives() {
    let mut d = LineDecoder::new(16);
    let out = lines_of(
      &mut d,
      &[
        b"{\"a\":\"0123456789",
        b"0123456789",
        b"0123\"}\n{\"ok\":1}\n",
      ],
    );
    assert_eq!(out.len(), 2);
    assert!(matches!(out[0], Err(seen) if seen > 16));
    assert_eq!(out[1], Ok(b"{\"ok\":1}".to_vec()));
    assert_eq!(d.pending(), 0);
  }

  #[test]
  fn an_oversized_line_inside_one_read_is_reported() {
    let mut d = LineDecoder::new(4);
    let out = lines_of(&mut d, &[b"123456\n12\n"]);
    assert_eq!(out, vec![Err(6), Ok(b"12".to_vec())]);
  }

  #[test]
  fn memory_stays_bounded_while_discarding() {
    let mut d = LineDecoder::new(1024);
    let chunk = vec![b'x'; 4096];
    for _ in 0..100 {
      d.feed(&chunk, |_| {});
    }
    assert_eq!(d.pending(), 0);
  }
}
