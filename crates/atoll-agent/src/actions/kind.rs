//! The action kinds, their arguments and whether each is safe to re-run after a crash.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};

/// An action kind (the API's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    /// `cluster.init`: a new island on this node (initdb if asked, start, atoll's catalog).
    ClusterInit,
    /// `cluster.add` (on the master): a slot and an access rule for a new replica.
    ClusterAdd,
    /// `cluster.join` (on a new node): base backup from the master, start as a replica.
    ClusterJoin,
    /// `cluster.remove` (on the master, idempotent): forget a node.
    ClusterRemove,
    /// `node.switchover` (on the master): hand the master role to a replica.
    NodeSwitchover,
    /// `node.restart`: restart this node's server.
    NodeRestart,
    /// `shard.activate`: mark a shard active on this island's master.
    ShardActivate,
    /// `shard.deactivate`: mark a shard inactive on this island's master.
    ShardDeactivate,
}

const ALL: [ActionKind; 8] = [
    ActionKind::ClusterInit,
    ActionKind::ClusterAdd,
    ActionKind::ClusterJoin,
    ActionKind::ClusterRemove,
    ActionKind::NodeSwitchover,
    ActionKind::NodeRestart,
    ActionKind::ShardActivate,
    ActionKind::ShardDeactivate,
];

impl ActionKind {
    /// The kind's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::ClusterInit => "cluster.init",
            ActionKind::ClusterAdd => "cluster.add",
            ActionKind::ClusterJoin => "cluster.join",
            ActionKind::ClusterRemove => "cluster.remove",
            ActionKind::NodeSwitchover => "node.switchover",
            ActionKind::NodeRestart => "node.restart",
            ActionKind::ShardActivate => "shard.activate",
            ActionKind::ShardDeactivate => "shard.deactivate",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<ActionKind> {
        ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Every kind, for error messages and docs.
    pub fn names() -> Vec<&'static str> {
        ALL.iter().map(|k| k.as_str()).collect()
    }

    /// Whether an action of this kind found RUNNING after a crash is run again (its steps
    /// are idempotent) rather than FAILED `interrupted`.
    pub fn rerunnable(self) -> bool {
        match self {
            ActionKind::ShardActivate
            | ActionKind::ShardDeactivate
            | ActionKind::NodeRestart
            | ActionKind::ClusterAdd
            | ActionKind::ClusterRemove => true,
            // A half-copied data directory, a half-done promotion or initdb need a person.
            ActionKind::ClusterJoin | ActionKind::NodeSwitchover | ActionKind::ClusterInit => false,
        }
    }

    /// Validates `args` for this kind and returns them with defaults filled in.
    pub fn validate(self, args: &serde_json::Value) -> Result<serde_json::Value, ArgError> {
        match self {
            ActionKind::ClusterInit => normalize::<InitArgs>(args),
            ActionKind::ClusterAdd => normalize::<AddArgs>(args),
            ActionKind::ClusterJoin => normalize::<JoinArgs>(args),
            ActionKind::ClusterRemove => normalize::<RemoveArgs>(args),
            ActionKind::NodeSwitchover => normalize::<SwitchoverArgs>(args),
            ActionKind::NodeRestart => normalize::<RestartArgs>(args),
            ActionKind::ShardActivate | ActionKind::ShardDeactivate => {
                let a: ShardArgs = parse(args)?;
                atoll_core::ShardNo::new(a.shard).map_err(|e| ArgError {
                    field: "args.shard".into(),
                    msg: e.to_string(),
                })?;
                to_value(&a)
            }
        }
    }
}

impl Serialize for ActionKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Bad arguments: the field (`args.shard`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {msg}")]
pub struct ArgError {
    /// The offending field, as a path from the request's top (`args.node`).
    pub field: String,
    /// What is wrong.
    pub msg: String,
}

/// Parses `v` as `T`, naming the field at fault as `<prefix>.<path>`.
pub fn parse_at<T: DeserializeOwned>(v: &serde_json::Value, prefix: &str) -> Result<T, ArgError> {
    let v = if v.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        v.clone()
    };
    serde_path_to_error::deserialize(v).map_err(|e| {
        let msg = e.inner().to_string();
        let path = e.path().to_string();
        // Unknown and missing fields are reported at their parent: name the field itself.
        let named = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|p| msg.strip_prefix(p))
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string);
        let mut field = prefix.to_string();
        if path != "." {
            field = join(&field, &path);
        }
        // A missing field is reported at its parent, an unknown one at itself.
        if let Some(name) = named.filter(|n| path.rsplit('.').next() != Some(n.as_str())) {
            field = join(&field, &name);
        }
        ArgError { field, msg }
    })
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}.{b}")
    }
}

fn parse<T: DeserializeOwned>(v: &serde_json::Value) -> Result<T, ArgError> {
    parse_at(v, "args")
}

fn to_value<T: Serialize>(a: &T) -> Result<serde_json::Value, ArgError> {
    serde_json::to_value(a).map_err(|e| ArgError {
        field: "args".into(),
        msg: e.to_string(),
    })
}

fn normalize<T: DeserializeOwned + Serialize + Checked>(
    v: &serde_json::Value,
) -> Result<serde_json::Value, ArgError> {
    let a: T = parse(v)?;
    a.check()?;
    to_value(&a)
}

/// Checks beyond the types.
trait Checked {
    fn check(&self) -> Result<(), ArgError> {
        Ok(())
    }
}

fn check_addr(field: &str, addr: &str) -> Result<(), ArgError> {
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if ok {
        Ok(())
    } else {
        Err(ArgError {
            field: format!("args.{field}"),
            msg: format!("{addr:?} is not HOST:PORT"),
        })
    }
}

/// `shard.activate` / `shard.deactivate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardArgs {
    /// The shard number, 0..=9999.
    pub shard: i64,
}

/// `node.restart`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartArgs {
    /// pg_ctl's shutdown mode.
    #[serde(default)]
    pub mode: StopMode,
}
impl Checked for RestartArgs {}

/// pg_ctl's `-m`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopMode {
    /// Wait for clients to disconnect.
    Smart,
    /// Roll back open transactions and disconnect clients (the default).
    #[default]
    Fast,
    /// Stop without a shutdown checkpoint (crash recovery at the next start).
    Immediate,
}

impl StopMode {
    /// pg_ctl's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// How a new replica authenticates for replication (`pg_hba.conf`'s method).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// Password, SCRAM (the default).
    #[default]
    ScramSha256,
    /// Password, MD5.
    Md5,
    /// Client certificate.
    Cert,
    /// No check (sandboxes only).
    Trust,
}

impl AuthMethod {
    /// pg_hba.conf's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::Md5 => "md5",
            AuthMethod::Cert => "cert",
            AuthMethod::Trust => "trust",
        }
    }
}

/// `cluster.add`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddArgs {
    /// The new node, `host:port` as in `atoll.toml`.
    pub node: String,
    /// The address replication connections come from (default: the node's host, which must
    /// then be an IP address).
    #[serde(default)]
    pub client_addr: Option<String>,
    /// The replication user (default: the user atoll.toml gives the new node).
    #[serde(default)]
    pub user: Option<String>,
    /// The access rule's method.
    #[serde(default)]
    pub auth: AuthMethod,
}
impl Checked for AddArgs {
    fn check(&self) -> Result<(), ArgError> {
        check_addr("node", &self.node)
    }
}

/// `cluster.join`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinArgs {
    /// The master to copy from (default: the island's node that answers as master).
    #[serde(default)]
    pub master: Option<String>,
}
impl Checked for JoinArgs {
    fn check(&self) -> Result<(), ArgError> {
        match &self.master {
            Some(m) => check_addr("master", m),
            None => Ok(()),
        }
    }
}

/// `cluster.remove`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveArgs {
    /// The node to forget, `host:port`.
    pub node: String,
}
impl Checked for RemoveArgs {
    fn check(&self) -> Result<(), ArgError> {
        check_addr("node", &self.node)
    }
}

/// `node.switchover`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchoverArgs {
    /// The replica to promote (default: the most advanced streaming replica).
    #[serde(default)]
    pub candidate: Option<String>,
    /// Refuse when the candidate's replay is more than this many bytes behind (default 16 MiB).
    #[serde(default = "default_max_lag")]
    pub max_lag_bytes: u64,
    /// Bound on waiting for the candidate to replay the last write, in ms (default 30 000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}
fn default_max_lag() -> u64 {
    16 << 20
}
fn default_timeout() -> u64 {
    30_000
}
impl Checked for SwitchoverArgs {
    fn check(&self) -> Result<(), ArgError> {
        match &self.candidate {
            Some(c) => check_addr("candidate", c),
            None => Ok(()),
        }
    }
}

/// `cluster.init`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitArgs {
    /// Run initdb into the data directory first (it must be empty or absent).
    #[serde(default)]
    pub initdb: bool,
    /// The cluster id to record (islands added to a cluster take its id); default: a new one.
    #[serde(default)]
    pub cluster_id: Option<String>,
}
impl Checked for InitArgs {
    fn check(&self) -> Result<(), ArgError> {
        match &self.cluster_id {
            Some(id)
                if id.is_empty()
                    || id.len() > 64
                    || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
            {
                Err(ArgError {
                    field: "args.cluster_id".into(),
                    msg: "must be 1..=64 of A-Z a-z 0-9 -".into(),
                })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_round_trip() {
        for k in ALL {
            assert_eq!(ActionKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ActionKind::parse("cluster.nuke"), None);
    }

    #[test]
    fn bad_args_name_the_field() {
        let k = ActionKind::ShardActivate;
        assert_eq!(k.validate(&json!({})).unwrap_err().field, "args.shard");
        assert_eq!(
            k.validate(&json!({"shard": "x"})).unwrap_err().field,
            "args.shard"
        );
        assert_eq!(
            k.validate(&json!({"shard": 10000})).unwrap_err().field,
            "args.shard"
        );
        let e = k.validate(&json!({"shard": 1, "sharx": 2})).unwrap_err();
        assert_eq!(e.field, "args.sharx", "{e}");
        assert_eq!(
            k.validate(&json!({"shard": 7})).unwrap(),
            json!({"shard": 7})
        );
        let e = ActionKind::ClusterRemove
            .validate(&json!({"node": "nohost"}))
            .unwrap_err();
        assert_eq!(e.field, "args.node");
        let e = ActionKind::ClusterAdd
            .validate(&json!({"node": "127.0.0.1:5", "auth": "plain"}))
            .unwrap_err();
        assert_eq!(e.field, "args.auth");
    }

    #[test]
    fn defaults_are_filled() {
        let v = ActionKind::NodeSwitchover.validate(&json!(null)).unwrap();
        assert_eq!(v["max_lag_bytes"], json!(16 << 20));
        assert_eq!(v["timeout_ms"], json!(30_000));
        let v = ActionKind::NodeRestart.validate(&json!({})).unwrap();
        assert_eq!(v["mode"], json!("fast"));
    }
}
