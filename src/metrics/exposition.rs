//! A `Snapshot` in Prometheus' text exposition format (version 0.0.4): one
//! `# HELP` and one `# TYPE` line per family, then its samples; counters end
//! in `_total`; worker samples carry `pid`, `kind` and (when known) `slot`.
//! Pure text: no I/O, no clock.

use std::fmt::Write;

use super::{Counts, DropReason, Snapshot, WorkerMetrics};

/// The `Content-Type` of what `render` writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes `snapshot` as Prometheus text.
pub fn render(snapshot: &Snapshot) -> String {
  let mut out = Text(String::with_capacity(2048 + snapshot.workers.len() * 2048));
  let workers = &snapshot.workers;

  type Figure = fn(&Counts) -> u64;
  let flows: [(&str, &str, Figure); 4] = [
    (
      "messages_in_total",
      "User messages read from the worker (Node's internal NODE_* messages not counted).",
      |c| c.messages_in,
    ),
    (
      "bytes_in_total",
      "Bytes of the user messages read from the worker (JSON text and newline).",
      |c| c.bytes_in,
    ),
    (
      "messages_out_total",
      "User messages queued for the worker (relayed or sent by the master).",
      |c| c.messages_out,
    ),
    (
      "bytes_out_total",
      "Bytes of the user messages queued for the worker, as queued.",
      |c| c.bytes_out,
    ),
  ];

  // per worker
  for (name, help, figure) in flows {
    out.family(&format!("egg_cluster_worker_{name}"), "counter", help);
    for w in workers {
      out.sample(
        &format!("egg_cluster_worker_{name}"),
        w,
        &[],
        figure(&w.counts) as f64,
      );
    }
  }
  out.family(
    "egg_cluster_worker_dropped_total",
    "counter",
    "Messages dropped, by reason: queue_full and target_gone count on the recipient, no_target, too_big and bad_line on the sender.",
  );
  for w in workers {
    for reason in DropReason::ALL {
      if reason == DropReason::MasterBacklog {
        continue;
      }
      let n = w.counts.dropped_for(reason) as f64;
      out.sample(
        "egg_cluster_worker_dropped_total",
        w,
        &[("reason", reason.as_str())],
        n,
      );
    }
  }
  out.family(
    "egg_cluster_worker_bad_lines_total",
    "counter",
    "Malformed lines read from the worker.",
  );
  for w in workers {
    let n = w.counts.dropped_for(DropReason::BadLine) as f64;
    out.sample("egg_cluster_worker_bad_lines_total", w, &[], n);
  }
  out.family(
    "egg_cluster_worker_queue_bytes",
    "gauge",
    "Bytes waiting in the worker's outbound queue.",
  );
  for w in workers {
    out.sample(
      "egg_cluster_worker_queue_bytes",
      w,
      &[],
      w.queue_bytes as f64,
    );
  }
  out.family(
    "egg_cluster_worker_uptime_seconds",
    "gauge",
    "Seconds since the worker was forked.",
  );
  for w in workers {
    out.sample(
      "egg_cluster_worker_uptime_seconds",
      w,
      &[],
      w.uptime_seconds,
    );
  }
  out.family(
    "egg_cluster_worker_restarts",
    "gauge",
    "How many times the worker's slot was forked before it.",
  );
  for w in workers {
    if let Some(restarts) = w.restarts {
      out.sample("egg_cluster_worker_restarts", w, &[], f64::from(restarts));
    }
  }
  out.family(
    "egg_cluster_worker_info",
    "gauge",
    "1 for each worker in the master's table, with its state.",
  );
  for w in workers {
    out.sample("egg_cluster_worker_info", w, &[("state", w.state)], 1.0);
  }

  // the whole cluster since the master started
  let total = &snapshot.total;
  for (name, help, figure) in flows {
    let name = format!("egg_cluster_{name}");
    out.family(&name, "counter", &format!("{help} All workers, ever."));
    out.plain(&name, &[], figure(total) as f64);
  }
  out.family(
    "egg_cluster_dropped_total",
    "counter",
    "Messages dropped, by reason (master_backlog: the master's own sends were 64 MiB behind).",
  );
  for reason in DropReason::ALL {
    let n = total.dropped_for(reason) as f64;
    out.plain(
      "egg_cluster_dropped_total",
      &[("reason", reason.as_str())],
      n,
    );
  }
  out.family(
    "egg_cluster_bad_lines_total",
    "counter",
    "Malformed lines read from workers.",
  );
  out.plain(
    "egg_cluster_bad_lines_total",
    &[],
    total.dropped_for(DropReason::BadLine) as f64,
  );
  out.family(
    "egg_cluster_queue_bytes",
    "gauge",
    "Bytes waiting in all workers' outbound queues.",
  );
  out.plain(
    "egg_cluster_queue_bytes",
    &[],
    snapshot.total_queue_bytes as f64,
  );
  out.family(
    "egg_cluster_relays_per_second",
    "gauge",
    "User messages queued for workers per second, over the last 10 s.",
  );
  out.plain(
    "egg_cluster_relays_per_second",
    &[],
    snapshot.relays_per_second,
  );
  out.family(
    "egg_cluster_forks_total",
    "counter",
    "Workers forked, by kind.",
  );
  out.plain(
    "egg_cluster_forks_total",
    &[("kind", "agent")],
    snapshot.agent_forks as f64,
  );
  out.plain(
    "egg_cluster_forks_total",
    &[("kind", "app")],
    snapshot.app_forks as f64,
  );
  out.family(
    "egg_cluster_reforks_total",
    "counter",
    "Workers forked into a slot that had a worker before.",
  );
  out.plain("egg_cluster_reforks_total", &[], snapshot.reforks as f64);

  // the master process
  let master = &snapshot.master;
  out.family(
    "egg_cluster_master_resident_memory_bytes",
    "gauge",
    "Resident set size of the master process.",
  );
  out.plain(
    "egg_cluster_master_resident_memory_bytes",
    &[],
    master.rss_bytes as f64,
  );
  out.family(
    "egg_cluster_master_cpu_seconds_total",
    "counter",
    "CPU time of the master process, by mode.",
  );
  out.plain(
    "egg_cluster_master_cpu_seconds_total",
    &[("mode", "user")],
    master.cpu_user_seconds,
  );
  out.plain(
    "egg_cluster_master_cpu_seconds_total",
    &[("mode", "system")],
    master.cpu_system_seconds,
  );
  out.family(
    "egg_cluster_master_uptime_seconds",
    "gauge",
    "Seconds since the master's core started.",
  );
  out.plain(
    "egg_cluster_master_uptime_seconds",
    &[],
    master.uptime_seconds,
  );
  out.0
}

struct Text(String);

impl Text {
  fn family(&mut self, name: &str, kind: &str, help: &str) {
    let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(self.0, "# TYPE {name} {kind}");
  }

  /// A sample with a worker's labels, then `extra`.
  fn sample(&mut self, name: &str, w: &WorkerMetrics, extra: &[(&str, &str)], value: f64) {
    let pid = w.pid.to_string();
    let slot = w.slot.map(|s| s.to_string());
    let mut labels: Vec<(&str, &str)> = vec![("pid", &pid), ("kind", w.kind)];
    if let Some(slot) = &slot {
      labels.push(("slot", slot));
    }
    labels.extend_from_slice(extra);
    self.plain(name, &labels, value);
  }

  fn plain(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
    self.0.push_str(name);
    if !labels.is_empty() {
      self.0.push('{');
      for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
          self.0.push(',');
        }
        let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
      }
      self.0.push('}');
    }
    let _ = writeln!(self.0, " {}", number(value));
  }
}

/// A sample value: integers without a fraction, never NaN or infinite.
fn number(v: f64) -> String {
  if !v.is_finite() {
    return "0".to_owned();
  }
  if v.fract() == 0.0 && v.abs() < 1e15 {
    format!("{}", v as i64)
  } else {
    format!("{v}")
  }
}

/// Label values escape `\`, `"` and newlines.
fn escape_label(v: &str) -> String {
  let mut s = String::with_capacity(v.len());
  for c in v.chars() {
    match c {
      '\\' => s.push_str("\\\\"),
      '"' => s.push_str("\\\""),
      '\n' => s.push_str("\\n"),
      c => s.push(c),
    }
  }
  s
}

/// HELP text escapes `\` and newlines.
fn escape_help(v: &str) -> String {
  v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
  use super::super::MasterMetrics;
  use super::*;

  fn worker(pid: u32, kind: &'static str, slot: Option<u32>) -> WorkerMetrics {
    let mut counts = Counts {
      messages_in: 3,
      bytes_in: 120,
      messages_out: 5,
      bytes_out: 200,
      ..Counts::default()
    };
    counts.dropped[DropReason::QueueFull as usize] = 7;
    counts.dropped[DropReason::BadLine as usize] = 2;
    WorkerMetrics {
      id: 1,
      pid,
      kind,
      slot,
      state: "listening",
      uptime_seconds: 1.5,
      restarts: slot.map(|_| 1),
      counts,
      queue_bytes: 64,
    }
  }

  fn snapshot() -> Snapshot {
    let mut total = Counts {
      messages_in: 10,
      bytes_in: 400,
      messages_out: 12,
      bytes_out: 480,
      ..Counts::default()
    };
    total.dropped[DropReason::MasterBacklog as usize] = 1;
    Snapshot {
      workers: vec![worker(100, "agent", None), worker(101, "app", Some(0))],
      total,
      total_queue_bytes: 128,
      relays_per_second: 2.5,
      agent_forks: 1,
      app_forks: 3,
      reforks: 2,
      master: MasterMetrics {
        pid: 99,
        rss_bytes: 50 << 20,
        cpu_user_seconds: 0.25,
        cpu_system_seconds: 0.125,
        uptime_seconds: 12.0,
      },
    }
  }

  /// (name, labels, value) of every sample line.
  fn samples(text: &str) -> Vec<(String, String, String)> {
    text
      .lines()
      .filter(|l| !l.starts_with('#'))
      .map(|l| {
        let (series, value) = l.rsplit_once(' ').expect("a value");
        let (name, labels) = match series.split_once('{') {
          Some((n, l)) => (n, l.trim_end_matches('}')),
          None => (series, ""),
        };
        (name.to_owned(), labels.to_owned(), value.to_owned())
      })
      .collect()
  }

  #[test]
  fn every_family_has_one_help_and_one_type_line_before_its_samples() {
    let text = render(&snapshot());
    assert!(text.ends_with('\n'));
    let mut declared = Vec::new();
    for line in text.lines() {
      if let Some(rest) = line.strip_prefix("# TYPE ") {
        let (name, kind) = rest.split_once(' ').unwrap();
        assert!(["counter", "gauge"].contains(&kind), "{line}");
        assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        assert!(
          !declared.contains(&name.to_owned()),
          "declared twice: {name}"
        );
        declared.push(name.to_owned());
      } else if !line.starts_with("# HELP ") {
        let name = line.split(['{', ' ']).next().unwrap();
        assert_eq!(declared.last().map(String::as_str), Some(name), "{line}");
      }
    }
    assert_eq!(
      text.matches("# HELP ").count(),
      text.matches("# TYPE ").count()
    );
  }

  #[test]
  fn worker_samples_carry_pid_kind_and_slot_when_known() {
    let text = render(&snapshot());
    let s = samples(&text);
    let find = |name: &str, labels: &str| {
      s.iter()
        .find(|(n, l, _)| n == name && l == labels)
        .map(|(_, _, v)| v.clone())
    };
    assert_eq!(
      find(
        "egg_cluster_worker_messages_in_total",
        "pid=\"100\",kind=\"agent\""
      )
      .as_deref(),
      Some("3")
    );
    assert_eq!(
      find(
        "egg_cluster_worker_bytes_out_total",
        "pid=\"101\",kind=\"app\",slot=\"0\""
      )
      .as_deref(),
      Some("200")
    );
    assert_eq!(
      find(
        "egg_cluster_worker_dropped_total",
        "pid=\"101\",kind=\"app\",slot=\"0\",reason=\"queue_full\""
      )
      .as_deref(),
      Some("7")
    );
    assert_eq!(
      find(
        "egg_cluster_worker_bad_lines_total",
        "pid=\"100\",kind=\"agent\""
      )
      .as_deref(),
      Some("2")
    );
    assert_eq!(
      find(
        "egg_cluster_worker_info",
        "pid=\"100\",kind=\"agent\",state=\"listening\""
      )
      .as_deref(),
      Some("1")
    );
    // restarts only for a worker whose slot is known
    assert_eq!(
      s.iter()
        .filter(|(n, _, _)| n == "egg_cluster_worker_restarts")
        .count(),
      1
    );
    assert_eq!(
      find(
        "egg_cluster_worker_uptime_seconds",
        "pid=\"100\",kind=\"agent\""
      )
      .as_deref(),
      Some("1.5")
    );
  }

  #[test]
  fn totals_rates_and_the_master_are_rendered() {
    let text = render(&snapshot());
    let s = samples(&text);
    let value = |name: &str, labels: &str| {
      s.iter()
        .find(|(n, l, _)| n == name && l == labels)
        .map(|(_, _, v)| v.clone())
        .unwrap_or_else(|| panic!("{name}{{{labels}}} missing in\n{text}"))
    };
    assert_eq!(value("egg_cluster_messages_out_total", ""), "12");
    assert_eq!(
      value("egg_cluster_dropped_total", "reason=\"master_backlog\""),
      "1"
    );
    assert_eq!(
      value("egg_cluster_dropped_total", "reason=\"no_target\""),
      "0"
    );
    assert_eq!(value("egg_cluster_relays_per_second", ""), "2.5");
    assert_eq!(value("egg_cluster_reforks_total", ""), "2");
    assert_eq!(value("egg_cluster_forks_total", "kind=\"app\""), "3");
    assert_eq!(
      value("egg_cluster_master_resident_memory_bytes", ""),
      (50u64 << 20).to_string()
    );
    assert_eq!(
      value("egg_cluster_master_cpu_seconds_total", "mode=\"system\""),
      "0.125"
    );
  }

  #[test]
  fn values_are_never_nan_or_infinite_and_labels_are_escaped() {
    assert_eq!(number(f64::NAN), "0");
    assert_eq!(number(f64::INFINITY), "0");
    assert_eq!(number(3.0), "3");
    assert_eq!(number(0.5), "0.5");
    assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  }

  #[test]
  fn an_empty_cluster_still_renders_every_family() {
    let text = render(&Snapshot::default());
    assert!(text.contains("# TYPE egg_cluster_worker_messages_in_total counter\n"));
    assert!(text.contains("egg_cluster_messages_in_total 0\n"));
  }
}
