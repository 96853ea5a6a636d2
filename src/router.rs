//! egg's routing rules as a pure function (DESIGN.md, "Message routing").
//! It decides where an envelope goes; it never touches the bytes or a socket.

use crate::ipc::message::ReceiverPid;

/// The channel a message arrived on; it is stamped as `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
  Master,
  Parent,
  Agent,
  App,
}

impl Sender {
  pub fn as_str(self) -> &'static str {
    match self {
      Sender::Master => "master",
      Sender::Parent => "parent",
      Sender::Agent => "agent",
      Sender::App => "app",
    }
  }

  pub fn parse(s: &str) -> Option<Sender> {
    match s {
      "master" => Some(Sender::Master),
      "parent" => Some(Sender::Parent),
      "agent" => Some(Sender::Agent),
      "app" => Some(Sender::App),
      _ => None,
    }
  }
}

/// Where a routed envelope goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
  /// Emitted on the JS Master.
  Master,
  /// `process.send` of the master.
  Parent,
  Agent,
  /// Every live app worker.
  Apps,
  /// Only the app worker with this pid (if it is one).
  AppPid(u32),
  /// egg drops it (unknown `to`, or a master message without `to`).
  Nowhere,
}

/// The decision: the `to` written into the envelope and where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
  pub to: Option<&'a str>,
  pub destination: Destination,
}

impl Route<'_> {
  /// The `to` a delivered envelope carries: one of egg's names, or `"?"`
  /// for any other truthy `to` (it routes nowhere and is never spliced in).
  pub fn egg_to(&self) -> Option<&'static str> {
    self
      .to
      .map(|t| Sender::parse(t).map_or("?", Sender::as_str))
  }
}

/// Applies egg's rules: `receiverPid` decides `to` (master pid → master,
/// agent pid → agent, anything else → app and only that pid); without `to`,
/// agent → app, app → agent, parent → master; then `to` picks the target.
pub fn route<'a>(
  from: Sender,
  to: Option<&'a str>,
  receiver: Option<ReceiverPid>,
  master_pid: u32,
  agent_pid: Option<u32>,
) -> Route<'a> {
  let mut only_pid = None;
  let to = match receiver {
    Some(ReceiverPid::Pid(pid)) if pid == master_pid => Some("master"),
    Some(ReceiverPid::Pid(pid)) if Some(pid) == agent_pid => Some("agent"),
    Some(ReceiverPid::Pid(pid)) => {
      only_pid = Some(Some(pid));
      Some("app")
    }
    Some(ReceiverPid::Unknown) => {
      only_pid = Some(None);
      Some("app")
    }
    None => to.or(match from {
      Sender::Agent => Some("app"),
      Sender::App => Some("agent"),
      Sender::Parent => Some("master"),
      Sender::Master => None,
    }),
  };
  let destination = match to {
    Some("master") => Destination::Master,
    Some("parent") => Destination::Parent,
    Some("agent") => Destination::Agent,
    Some("app") => match only_pid {
      None => Destination::Apps,
      Some(Some(pid)) => Destination::AppPid(pid),
      Some(None) => Destination::Nowhere,
    },
    _ => Destination::Nowhere,
  };
  Route { to, destination }
}

#[cfg(test)]
mod tests {
  use super::*;
  use Destination::*;
  use Sender::{Agent as FromAgent, App as FromApp, Master as FromMaster, Parent as FromParent};

  /// from, to, receiverPid → expected to, expected destination
  type Row = (
    Sender,
    Option<&'static str>,
    Option<ReceiverPid>,
    Option<&'static str>,
    Destination,
  );

  const MASTER: u32 = 100;
  const AGENT: u32 = 200;

  #[test]
  fn every_rule_of_the_design_table() {
    let pid = |p| Some(ReceiverPid::Pid(p));
    #[rustfmt::skip]
    let table: Vec<Row> = vec![
      // default `to` per sender
      (FromAgent, None, None, Some("app"), Apps),
      (FromApp, None, None, Some("agent"), Agent),
      (FromParent, None, None, Some("master"), Master),
      (FromMaster, None, None, None, Nowhere),
      // explicit `to`
      (FromAgent, Some("master"), None, Some("master"), Master),
      (FromApp, Some("master"), None, Some("master"), Master),
      (FromApp, Some("parent"), None, Some("parent"), Parent),
      (FromAgent, Some("parent"), None, Some("parent"), Parent),
      (FromMaster, Some("parent"), None, Some("parent"), Parent),
      (FromParent, Some("app"), None, Some("app"), Apps),
      (FromParent, Some("agent"), None, Some("agent"), Agent),
      (FromApp, Some("app"), None, Some("app"), Apps),
      (FromAgent, Some("agent"), None, Some("agent"), Agent),
      (FromMaster, Some("app"), None, Some("app"), Apps),
      (FromMaster, Some("agent"), None, Some("agent"), Agent),
      (FromApp, Some("nobody"), None, Some("nobody"), Nowhere),
      // receiverPid decides `to`, whatever `to` said
      (FromApp, Some("agent"), pid(MASTER), Some("master"), Master),
      (FromApp, Some("app"), pid(AGENT), Some("agent"), Agent),
      (FromAgent, None, pid(301), Some("app"), AppPid(301)),
      (FromApp, Some("master"), pid(302), Some("app"), AppPid(302)),
      (FromMaster, None, pid(303), Some("app"), AppPid(303)),
      (FromApp, None, Some(ReceiverPid::Unknown), Some("app"), Nowhere),
    ];
    for (from, to, receiver, want_to, want_dest) in table {
      let r = route(from, to, receiver, MASTER, Some(AGENT));
      assert_eq!(
        (r.to, r.destination),
        (want_to, want_dest),
        "from {from:?} to {to:?} receiver {receiver:?}"
      );
    }
  }

  /// The whole path a line takes, from its JSON text: egg-cluster 2.x's
  /// rules, with `receiverPid` as a string (what egg sends) or a number (the
  /// same pid: beyond egg-cluster, which compares strings and so would send
  /// a number nowhere), and egg 4's `receiverWorkerId` when `receiverPid` is
  /// falsy.
  #[test]
  fn every_rule_from_the_json_text() {
    use crate::ipc::message::{parse_line, Incoming};
    #[rustfmt::skip]
    let table: &[(Sender, &str, Option<&str>, Destination)] = &[
      // no receiver: `to`, else the sender's default
      (FromApp, r#"{"action":"a"}"#, Some("agent"), Agent),
      (FromAgent, r#"{"action":"a"}"#, Some("app"), Apps),
      (FromParent, r#"{"action":"a"}"#, Some("master"), Master),
      (FromMaster, r#"{"action":"a"}"#, None, Nowhere),
      (FromApp, r#""a-bare-string""#, Some("agent"), Agent),
      (FromApp, r#"{"action":"a","to":"parent"}"#, Some("parent"), Parent),
      (FromMaster, r#"{"action":"a","to":"app"}"#, Some("app"), Apps),
      (FromMaster, r#"{"action":"a","to":"agent"}"#, Some("agent"), Agent),
      (FromApp, r#"{"action":"a","to":"elsewhere"}"#, Some("elsewhere"), Nowhere),
      // falsy `to` is no `to`
      (FromApp, r#"{"action":"a","to":""}"#, Some("agent"), Agent),
      (FromAgent, r#"{"action":"a","to":null}"#, Some("app"), Apps),
      (FromApp, r#"{"action":"a","to":0}"#, Some("agent"), Agent),
      // receiverPid, as a string: the master's pid, the agent's, an app's, unknown
      (FromApp, r#"{"action":"a","receiverPid":"100"}"#, Some("master"), Master),
      (FromApp, r#"{"action":"a","receiverPid":"200","to":"app"}"#, Some("agent"), Agent),
      (FromAgent, r#"{"action":"a","receiverPid":"301"}"#, Some("app"), AppPid(301)),
      (FromMaster, r#"{"action":"a","receiverPid":"302","to":"agent"}"#, Some("app"), AppPid(302)),
      (FromParent, r#"{"action":"a","receiverPid":"303"}"#, Some("app"), AppPid(303)),
      (FromApp, r#"{"action":"a","receiverPid":"not-a-pid"}"#, Some("app"), Nowhere),
      (FromApp, r#"{"action":"a","receiverPid":{"pid":1}}"#, Some("app"), Nowhere),
      // ... and as a number
      (FromAgent, r#"{"action":"a","receiverPid":100}"#, Some("master"), Master),
      (FromApp, r#"{"action":"a","receiverPid":200}"#, Some("agent"), Agent),
      (FromAgent, r#"{"action":"a","receiverPid":304}"#, Some("app"), AppPid(304)),
      (FromAgent, r#"{"action":"a","receiverPid":-5}"#, Some("app"), Nowhere),
      // falsy receiverPid is none
      (FromApp, r#"{"action":"a","receiverPid":""}"#, Some("agent"), Agent),
      (FromApp, r#"{"action":"a","receiverPid":0,"to":"app"}"#, Some("app"), Apps),
      (FromAgent, r#"{"action":"a","receiverPid":null}"#, Some("app"), Apps),
      // egg 4's receiverWorkerId, when receiverPid is falsy
      (FromAgent, r#"{"action":"a","receiverWorkerId":"305"}"#, Some("app"), AppPid(305)),
      (FromAgent, r#"{"action":"a","receiverPid":0,"receiverWorkerId":306}"#, Some("app"), AppPid(306)),
      (FromAgent, r#"{"action":"a","receiverPid":"","receiverWorkerId":"200"}"#, Some("agent"), Agent),
      (FromApp, r#"{"action":"a","receiverPid":"307","receiverWorkerId":"200"}"#, Some("app"), AppPid(307)),
      (FromApp, r#"{"action":"a","receiverPid":null,"receiverWorkerId":0}"#, Some("agent"), Agent),
    ];
    for &(from, json, want_to, want_dest) in table {
      let Ok(Incoming::User(env)) = parse_line(json.as_bytes()) else {
        panic!("{json} is a user message");
      };
      let to = env.to();
      let r = route(from, to.as_deref(), env.receiver_pid(), MASTER, Some(AGENT));
      assert_eq!(
        (r.to, r.destination),
        (want_to, want_dest),
        "{from:?} {json}"
      );
    }
  }

  #[test]
  fn without_an_agent_a_pid_is_an_app_pid() {
    let r = route(FromApp, None, Some(ReceiverPid::Pid(AGENT)), MASTER, None);
    assert_eq!(r.destination, AppPid(AGENT));
  }
}
