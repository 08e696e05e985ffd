//! The languages the daemon runs. For now a small built-in table (Python, Bash,
//! JavaScript) on the host's root filesystem; the languages issue replaces it with
//! definitions as data under `rootfs/`. Each language's version is asked for at start, in
//! a sandbox, which also tells whether its toolchain is there at all.

use std::fmt;

use crate::limit::Limits;
use crate::run::{RunRequest, Runner, Status};

/// One language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Language {
    /// Canonical name (`python`).
    pub id: &'static str,
    /// For people (`Python 3`).
    pub name: &'static str,
    /// Every name a request may use, `id` included, lower case.
    pub aliases: &'static [&'static str],
    /// The file `code` is written to.
    pub main_file: &'static str,
    /// How to run it; `{main}` is the entry file.
    pub run: &'static [&'static str],
    /// How to ask its version (the first line of output, stdout or stderr).
    pub version_command: &'static [&'static str],
}

const BUILTIN: [Language; 3] = [
    Language {
        id: "python",
        name: "Python 3",
        aliases: &["python", "python3", "py"],
        main_file: "main.py",
        run: &["python3", "{main}"],
        version_command: &["python3", "--version"],
    },
    Language {
        id: "bash",
        name: "Bash",
        aliases: &["bash", "sh", "shell"],
        main_file: "main.sh",
        run: &["bash", "{main}"],
        version_command: &["bash", "--version"],
    },
    Language {
        id: "javascript",
        name: "JavaScript (Node.js)",
        aliases: &["javascript", "js", "node", "nodejs"],
        main_file: "main.js",
        run: &["node", "{main}"],
        version_command: &["node", "--version"],
    },
];

/// Whether a language can run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Its toolchain answered with this version.
    Available {
        /// The version, e.g. `3.11.2`.
        version: String,
    },
    /// It cannot run; why.
    Unavailable {
        /// E.g. `python3 not found in the root filesystem`.
        reason: String,
    },
}

/// The languages and what the probe found.
#[derive(Debug, Clone)]
pub struct Registry {
    entries: Vec<(Language, Availability)>,
}

/// A language name no language answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// The name asked for.
    pub name: String,
    /// The ids that exist.
    pub supported: Vec<&'static str>,
}

impl fmt::Display for Unknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unsupported language {:?}; supported: {}", self.name, self.supported.join(", "))
    }
}

impl std::error::Error for Unknown {}

impl Registry {
    /// Asks every language for its version, in a sandbox of `runner`.
    pub fn probe(runner: &Runner) -> Registry {
        let entries = BUILTIN
            .iter()
            .map(|lang| {
                let availability = probe_one(runner, lang);
                match &availability {
                    Availability::Available { version } => tracing::info!(language = lang.id, %version, "available"),
                    Availability::Unavailable { reason } => tracing::warn!(language = lang.id, %reason, "unavailable"),
                }
                (lang.clone(), availability)
            })
            .collect();
        Registry { entries }
    }

    /// A registry with given availabilities (for tests of the layers above).
    pub fn with(availability: impl Fn(&Language) -> Availability) -> Registry {
        Registry { entries: BUILTIN.iter().map(|l| (l.clone(), availability(l))).collect() }
    }

    /// The language `name` answers to (any alias, any case).
    pub fn find(&self, name: &str) -> Result<&(Language, Availability), Unknown> {
        let lower = name.trim().to_ascii_lowercase();
        self.entries.iter().find(|(l, _)| l.aliases.contains(&lower.as_str())).ok_or_else(|| Unknown {
            name: name.to_owned(),
            supported: self.entries.iter().map(|(l, _)| l.id).collect(),
        })
    }

    /// Every language, in a stable order.
    pub fn all(&self) -> &[(Language, Availability)] {
        &self.entries
    }
}

/// A built-in language by any of its names, without asking for its version (`codeexec run
/// --language` runs locally without a registry).
pub fn builtin(name: &str) -> Result<Language, Unknown> {
    Registry::with(|_| Availability::Available { version: String::new() }).find(name).map(|(l, _)| l.clone())
}

impl Language {
    /// The command that runs `entry` with `args`.
    pub fn command(&self, entry: &str, args: &[String]) -> Vec<String> {
        self.run.iter().map(|a| a.replace("{main}", entry)).chain(args.iter().cloned()).collect()
    }
}

/// Asks one language for its version. codeexec's own failures (not the toolchain's) are
/// retried twice, so a passing hiccup at start does not hide a language for the daemon's
/// whole life.
fn probe_one(runner: &Runner, lang: &Language) -> Availability {
    let limits = Limits {
        cpu_time: std::time::Duration::from_secs(10),
        wall_time: std::time::Duration::from_secs(20),
        ..Limits::default()
    };
    let req = RunRequest {
        argv: lang.version_command.iter().map(|s| (*s).to_owned()).collect(),
        limits,
        ..RunRequest::default()
    };
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        let why = match runner.run(&req) {
            Ok(o) if o.status != Status::InternalError => break o,
            Ok(o) => o.message.unwrap_or_default(),
            Err(e) => crate::error_chain(&e),
        };
        if attempt == 3 {
            return Availability::Unavailable { reason: format!("the version check could not run: {why}") };
        }
        tracing::warn!(language = lang.id, error = %why, "the version check failed in codeexec; retrying");
    };
    if outcome.status != Status::Ok {
        let why = outcome.message.unwrap_or_else(|| outcome.status.as_str().to_owned());
        return Availability::Unavailable { reason: format!("`{}` failed: {why}", lang.version_command.join(" ")) };
    }
    let text =
        String::from_utf8_lossy(if outcome.stdout.is_empty() { &outcome.stderr } else { &outcome.stdout }).into_owned();
    Availability::Available { version: parse_version(&text) }
}

/// The first version-looking token of the first line: `Python 3.11.2` -> `3.11.2`,
/// `v20.20.2` -> `20.20.2`, `GNU bash, version 5.2.15(1)-release (...)` -> `5.2.15`.
fn parse_version(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    line.split_whitespace()
        .map(|t| t.trim_start_matches('v'))
        .find(|t| t.starts_with(|c: char| c.is_ascii_digit()))
        .map(|t| {
            t.split(|c: char| !(c.is_ascii_digit() || c == '.')).next().unwrap_or(t).trim_end_matches('.').to_owned()
        })
        .unwrap_or_else(|| line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_parsed_from_the_first_line() {
        assert_eq!(parse_version("Python 3.11.2\n"), "3.11.2");
        assert_eq!(parse_version("v20.20.2\n"), "20.20.2");
        assert_eq!(parse_version("GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)\nCopyright"), "5.2.15");
        assert_eq!(parse_version("weird"), "weird");
    }

    #[test]
    fn aliases_find_languages_in_any_case() {
        let r = Registry::with(|_| Availability::Available { version: "1".into() });
        assert_eq!(r.find("Py").unwrap().0.id, "python");
        assert_eq!(r.find("node").unwrap().0.id, "javascript");
        assert_eq!(r.find(" JS ").unwrap().0.id, "javascript");
        let e = r.find("cobol").unwrap_err();
        assert_eq!(e.to_string(), "unsupported language \"cobol\"; supported: python, bash, javascript");
    }

    #[test]
    fn commands_put_the_entry_file_and_arguments_in_place() {
        let r = Registry::with(|_| Availability::Available { version: "1".into() });
        let py = &r.find("python").unwrap().0;
        assert_eq!(py.command("main.py", &["a".into(), "b c".into()]), ["python3", "main.py", "a", "b c"]);
        // no alias is shared by two languages
        let mut seen = std::collections::HashSet::new();
        for (l, _) in r.all() {
            assert!(l.aliases.contains(&l.id));
            for a in l.aliases {
                assert!(seen.insert(*a), "alias {a} used twice");
            }
        }
    }
}
