//! `[dialects]`: where each other service's API shape is served (its path prefix), or not
//! at all. Validated here; the translations themselves live in `api/dialect/`.

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Result};

/// `[dialects]`: each dialect's path prefix; `""` turns it off, `"/"` serves it at the root
/// (a drop-in: the native routes still answer their own paths first).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dialects {
    /// Piston v2 (`/api/v2/runtimes`, `/api/v2/execute`, `/api/v2/packages`).
    pub piston: String,
    /// Judge0 CE 1.13.1 (`/submissions`, `/languages`, …).
    pub judge0: String,
    /// The Go service's API (`X-Api-Key`).
    pub codeexec_go: String,
    /// AggieCode's `POST /api/execute`.
    pub aggiecode: String,
    /// The FastAPI/Celery engine's `POST /execute`, its status route and callbacks.
    pub engine: String,
    /// CodeEngine's `GET /health`, `POST /execute`.
    pub codeengine: String,
}

impl Default for Dialects {
    fn default() -> Self {
        Self {
            piston: "/api/v2".into(),
            judge0: "/judge0".into(),
            codeexec_go: "/go".into(),
            aggiecode: "/aggiecode".into(),
            engine: "/engine".into(),
            codeengine: "/codeengine".into(),
        }
    }
}

/// A dialect served at a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialectMount {
    /// `piston`, `judge0`, `codeexec-go`, `aggiecode`, `engine`, `codeengine`.
    pub name: &'static str,
    /// `/api/v2`, or `/` for the root.
    pub prefix: String,
}

/// The native API's own path roots, which no dialect may take.
const NATIVE: [&str; 6] = ["/v1", "/health", "/livez", "/readyz", "/version", "/metrics"];

impl Config {
    /// The dialects turned on, each at a prefix of its own.
    pub(super) fn dialect_mounts(&self) -> Result<Vec<DialectMount>> {
        let d = &self.dialects;
        let all = [
            ("piston", &d.piston),
            ("judge0", &d.judge0),
            ("codeexec-go", &d.codeexec_go),
            ("aggiecode", &d.aggiecode),
            ("engine", &d.engine),
            ("codeengine", &d.codeengine),
        ];
        let mut out: Vec<DialectMount> = Vec::new();
        for (name, prefix) in all {
            if prefix.is_empty() {
                continue;
            }
            let key = format!("dialects.{}", name.replace('-', "_"));
            let well_formed = prefix == "/"
                || (prefix.starts_with('/')
                    && !prefix.ends_with('/')
                    && prefix.len() <= 100
                    && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b)));
            if !well_formed {
                return Err(ConfigError::Invalid(format!(
                    "{key} {prefix:?}: a path prefix such as \"/{name}\" (letters, digits, - _ . /; no trailing /), \"/\" \
                     for the root, or \"\" for off"
                )));
            }
            if NATIVE.iter().any(|n| prefix == n || prefix.starts_with(&format!("{n}/"))) {
                return Err(ConfigError::Invalid(format!("{key} {prefix:?}: that path is the native API's")));
            }
            if let Some(other) = out.iter().find(|m| overlaps(&m.prefix, prefix)) {
                return Err(ConfigError::Invalid(format!(
                    "{key} {prefix:?} overlaps dialects.{} {:?}: give each its own prefix (one at most may be \"/\")",
                    other.name.replace('-', "_"),
                    other.prefix
                )));
            }
            out.push(DialectMount { name, prefix: prefix.clone() });
        }
        Ok(out)
    }
}

/// Whether two prefixes would share a path (the root shares with none but another root).
fn overlaps(a: &str, b: &str) -> bool {
    if a == "/" || b == "/" {
        return a == b;
    }
    a == b || b.starts_with(&format!("{a}/")) || a.starts_with(&format!("{b}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked() {
        let mounts = Config::default().dialect_mounts().unwrap();
        assert_eq!(mounts.len(), 6);
        assert_eq!(mounts[0], DialectMount { name: "piston", prefix: "/api/v2".into() });
        let with = |f: fn(&mut Dialects)| {
            let mut c = Config::default();
            f(&mut c.dialects);
            c.dialect_mounts()
        };
        assert_eq!(with(|d| d.judge0 = "/".into()).unwrap()[1].prefix, "/");
        assert_eq!(with(|d| d.engine = String::new()).unwrap().len(), 5);
        for bad in [
            with(|d| d.judge0 = "judge0".into()),
            with(|d| d.judge0 = "/judge0/".into()),
            with(|d| d.judge0 = "/v1".into()),
            with(|d| d.judge0 = "/health/x".into()),
            with(|d| d.judge0 = "/api/v2/x".into()),
            with(|d| d.judge0 = "/a b".into()),
            with(|d| {
                d.judge0 = "/".into();
                d.engine = "/".into();
            }),
        ] {
            assert!(bad.is_err(), "{bad:?}");
        }
    }
}
