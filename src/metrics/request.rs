//! What the `/metrics` endpoint answers to the bytes a client sent so far:
//! HTTP/1.0 and 1.1 request heads, judged as early as possible (a bad
//! request line is refused before the head ends) and never read past
//! `MAX_HEAD` bytes. Pure: the socket handling is `server`'s.

/// The longest request head read; longer is 431.
pub const MAX_HEAD: usize = 8 * 1024;

/// The answer to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
  /// 200 with the metrics (`head_only`: for `HEAD`, no body).
  Metrics { head_only: bool },
  /// 400: not an HTTP/1.x request head.
  BadRequest,
  /// 404: any path but `/metrics`.
  NotFound,
  /// 405: `/metrics` with a method other than GET or HEAD.
  MethodNotAllowed,
  /// 408: the head did not arrive within the read timeout.
  Timeout,
  /// 431: the head is longer than `MAX_HEAD`.
  HeadTooLarge,
}

impl Answer {
  /// The status line's code and reason.
  pub fn status(self) -> (u16, &'static str) {
    match self {
      Answer::Metrics { .. } => (200, "OK"),
      Answer::BadRequest => (400, "Bad Request"),
      Answer::NotFound => (404, "Not Found"),
      Answer::MethodNotAllowed => (405, "Method Not Allowed"),
      Answer::Timeout => (408, "Request Timeout"),
      Answer::HeadTooLarge => (431, "Request Header Fields Too Large"),
    }
  }
}

/// The answer to `buf` (everything read so far), or None while the head is
/// incomplete and may still be valid.
pub fn answer(buf: &[u8]) -> Option<Answer> {
  let head_end = find_head_end(buf);
  // only what a head may hold: visible ASCII, space, tab, CR, LF (a body may
  // follow the head: it is not looked at)
  let limit = head_end.unwrap_or(buf.len()).min(MAX_HEAD + 4);
  if buf[..limit]
    .iter()
    .any(|&b| !(b == b'\t' || b == b'\r' || b == b'\n' || (0x20..0x7f).contains(&b)))
  {
    return Some(Answer::BadRequest);
  }
  let Some(first_end) = buf.iter().position(|&b| b == b'\n') else {
    return (buf.len() > MAX_HEAD).then_some(Answer::HeadTooLarge);
  };
  let request_line = strip_cr(&buf[..first_end]);
  let Some((method, path)) = parse_request_line(request_line) else {
    return Some(Answer::BadRequest);
  };
  let Some(head_end) = head_end else {
    return (buf.len() > MAX_HEAD).then_some(Answer::HeadTooLarge);
  };
  if head_end > MAX_HEAD {
    return Some(Answer::HeadTooLarge);
  }
  // header fields: `name: value`, the name a token
  for line in buf[first_end + 1..head_end].split(|&b| b == b'\n') {
    let line = strip_cr(line);
    if line.is_empty() {
      continue;
    }
    match line.iter().position(|&b| b == b':') {
      Some(colon) if colon > 0 && line[..colon].iter().all(|&b| is_tchar(b)) => {}
      _ => return Some(Answer::BadRequest),
    }
  }
  let path = path.split(|&b| b == b'?').next().unwrap_or_default();
  Some(if path != b"/metrics" {
    Answer::NotFound
  } else {
    match method {
      b"GET" => Answer::Metrics { head_only: false },
      b"HEAD" => Answer::Metrics { head_only: true },
      _ => Answer::MethodNotAllowed,
    }
  })
}

/// `METHOD SP request-target SP HTTP/1.x`: (method, target).
fn parse_request_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
  let mut parts = line.split(|&b| b == b' ');
  let method = parts.next()?;
  let target = parts.next()?;
  let version = parts.next()?;
  if parts.next().is_some() {
    return None;
  }
  let method_ok = !method.is_empty() && method.iter().all(|&b| is_tchar(b));
  let target_ok = target.first() == Some(&b'/') || target == b"*";
  let version_ok = version == b"HTTP/1.1" || version == b"HTTP/1.0";
  (method_ok && target_ok && version_ok).then_some((method, target))
}

/// The offset just past the blank line that ends the head.
fn find_head_end(buf: &[u8]) -> Option<usize> {
  let mut line_start = 0;
  for (i, &b) in buf.iter().enumerate() {
    if b == b'\n' {
      if strip_cr(&buf[line_start..i]).is_empty() && line_start > 0 {
        return Some(i + 1);
      }
      line_start = i + 1;
    }
  }
  None
}

fn strip_cr(line: &[u8]) -> &[u8] {
  line.strip_suffix(b"\r").unwrap_or(line)
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
  b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn get_and_head_of_metrics_are_answered_with_the_metrics() {
    assert_eq!(
      answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"),
      Some(Answer::Metrics { head_only: false })
    );
    assert_eq!(
      answer(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
      Some(Answer::Metrics { head_only: true })
    );
    // bare LF line ends are accepted, as most servers do
    assert_eq!(
      answer(b"GET /metrics HTTP/1.1\nHost: x\n\n"),
      Some(Answer::Metrics { head_only: false })
    );
  }

  #[test]
  fn an_incomplete_head_waits_for_more() {
    assert_eq!(answer(b""), None);
    assert_eq!(answer(b"GET /met"), None);
    assert_eq!(answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), None);
  }

  #[test]
  fn other_paths_are_404_and_other_methods_405() {
    assert_eq!(answer(b"GET / HTTP/1.1\r\n\r\n"), Some(Answer::NotFound));
    assert_eq!(
      answer(b"GET /metricsx HTTP/1.1\r\n\r\n"),
      Some(Answer::NotFound)
    );
    assert_eq!(answer(b"POST / HTTP/1.1\r\n\r\n"), Some(Answer::NotFound));
    assert_eq!(
      answer(b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
      Some(Answer::MethodNotAllowed)
    );
    assert_eq!(
      answer(b"DELETE /metrics HTTP/1.1\r\n\r\n"),
      Some(Answer::MethodNotAllowed)
    );
  }

  #[test]
  fn a_bad_request_line_is_refused_before_the_head_ends() {
    for bad in [
      &b"GET\r\n"[..],
      b"GET /metrics\r\n",
      b"GET  /metrics HTTP/1.1\r\n",
      b"GET metrics HTTP/1.1\r\n",
      b"GET /metrics HTTP/2.0\r\n",
      b"GET /metrics HTTP/1.1 extra\r\n",
      b"G(T /metrics HTTP/1.1\r\n",
      b"\r\n",
    ] {
      assert_eq!(answer(bad), Some(Answer::BadRequest), "{bad:?}");
    }
  }

  #[test]
  fn binary_bytes_and_bad_header_lines_are_400() {
    assert_eq!(answer(b"\x00\xff\x16\x03"), Some(Answer::BadRequest));
    assert_eq!(
      answer(b"GET /metrics HTTP/1.1\r\nHost: \x01\r\n"),
      Some(Answer::BadRequest)
    );
    assert_eq!(
      answer(b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n"),
      Some(Answer::BadRequest)
    );
    assert_eq!(
      answer(b"GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n"),
      Some(Answer::BadRequest)
    );
    // a TLS ClientHello
    assert_eq!(
      answer(&[0x16, 0x03, 0x01, 0x02, 0x00]),
      Some(Answer::BadRequest)
    );
  }

  #[test]
  fn a_head_over_8_kib_is_431() {
    let mut head = b"GET /metrics HTTP/1.1\r\nX-Long: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', MAX_HEAD));
    assert_eq!(answer(&head), Some(Answer::HeadTooLarge));
    let mut line = b"GET /".to_vec();
    line.extend(std::iter::repeat_n(b'a', MAX_HEAD + 1));
    assert_eq!(answer(&line), Some(Answer::HeadTooLarge));
    // just under the limit is fine
    let mut ok = b"GET /metrics HTTP/1.1\r\nX-Long: ".to_vec();
    ok.extend(std::iter::repeat_n(b'a', MAX_HEAD - 100));
    ok.extend_from_slice(b"\r\n\r\n");
    assert_eq!(answer(&ok), Some(Answer::Metrics { head_only: false }));
  }

  #[test]
  fn every_answer_but_metrics_is_a_4xx() {
    for a in [
      Answer::BadRequest,
      Answer::NotFound,
      Answer::MethodNotAllowed,
      Answer::Timeout,
      Answer::HeadTooLarge,
    ] {
      assert!((400..500).contains(&a.status().0));
    }
  }
}
