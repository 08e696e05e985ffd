//! The languages the daemon runs, as data: one TOML file per language under
//! `rootfs/languages/` (compiled in), or the files of a directory the configuration names.
//! Each is parsed and checked at start; a broken one stops the start with a message that
//! names the file and the field. Each language's version is then asked for in a sandbox,
//! which also tells whether its toolchain is there at all: a missing one is listed as
//! unavailable, with the reason, and is not a start-up error.
//!
//! A definition names up to three stages, each a command run in a sandbox of its own with
//! its own limits (see `pipeline`): `syntax` (a fast check), `compile`, and `run`. Commands
//! take placeholders, expanded per request: `{main}` (the entry file), `{main_stem}` (the
//! entry file without its extension), `{sources}` (every input file with one of the
//! language's source extensions, the entry first; several arguments), `{main_class}` (Java:
//! the class with `main`), `{memory_mb}` and `{heap_mb}` (the stage's memory limit, and
//! three quarters of it), `{cpus}` (whole cores of its CPU limit, at least 1).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::LimitTable;
use crate::diagnostics::{ErrorFormat, Format};
use crate::limit::Limits;
use crate::run::{RunRequest, Runner, Status};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/languages.rs"));
}

/// Placeholders a command may use.
const PLACEHOLDERS: [&str; 7] = ["main", "main_stem", "sources", "main_class", "memory_mb", "heap_mb", "cpus"];

/// One language, as its file defines it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Language {
    /// Canonical name (`python`).
    pub id: String,
    /// For people (`Python 3`).
    pub name: String,
    /// Other names a request may use (any case); the id always works.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `host`, or the name of an image in the store (`codeexec/python:bookworm`).
    #[serde(default = "host")]
    pub rootfs: String,
    /// Debian packages its image needs (for building images).
    #[serde(default)]
    pub packages: Vec<String>,
    /// Debian packages an image of it may add on request (`scripts/build-rootfs --extras`):
    /// libraries programs commonly import, such as numpy.
    #[serde(default)]
    pub extras: Vec<String>,
    /// The file `code` is written to, and the entry of a multi-file program when present.
    pub main_file: String,
    /// How the entry file is found (`java_class`: the class with `main`).
    #[serde(default)]
    pub entry: Entry,
    /// Extensions of source files (`.c`), for `{sources}`.
    #[serde(default)]
    pub sources: Vec<String>,
    /// How to ask its version (the first line of stdout, or of stderr).
    pub version: Vec<String>,
    /// Environment of every stage (on top of PATH, HOME=/sandbox, LANG=C.UTF-8).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A fast check before anything runs.
    pub syntax: Option<SyntaxStage>,
    /// A compiler, run before the program.
    pub compile: Option<CompileStage>,
    /// How the program runs.
    pub run: RunStage,
    /// Where it runs, as the daemon resolved `rootfs` at start (not in the file).
    #[serde(skip)]
    pub placement: Placement,
}

/// Where a language's sandboxes get their root: the runner's root index, and the image
/// behind it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// `RunRequest::root`.
    pub root: usize,
    /// The image, when it runs on one.
    pub image: Option<ImageRef>,
    /// Why it cannot run (its image is missing and there is no fallback).
    pub missing: Option<String>,
    /// Its image is missing and it runs on the host's root instead: why.
    pub fallback: Option<String>,
}

/// An image a language runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Its name in the store.
    pub name: String,
    /// Its manifest digest.
    pub digest: String,
}

/// Resolves every language's `rootfs` against the image store: each image found is leased
/// (for as long as the returned leases live) and becomes a root of the runner, in the
/// order of the returned paths (root `1 + i`); a missing one makes its language
/// unavailable, or, with `host_fallback`, run on the host's root, said in the log.
pub fn place(
    languages: &mut [Language],
    store: Option<&crate::image::Store>,
    host_fallback: bool,
) -> (Vec<std::path::PathBuf>, Vec<crate::image::Lease>) {
    let mut roots: Vec<std::path::PathBuf> = Vec::new();
    let mut leases = Vec::new();
    let mut by_digest: BTreeMap<String, usize> = BTreeMap::new();
    for lang in languages.iter_mut() {
        if lang.rootfs == "host" {
            lang.placement = Placement::default();
            continue;
        }
        let found = match store {
            Some(s) => s.lease(&lang.rootfs).map_err(|e| e.to_string()),
            None => Err("there is no image store".to_owned()),
        };
        match found {
            Ok((record, lease)) => {
                let root = *by_digest.entry(record.digest.clone()).or_insert_with(|| {
                    roots.push(lease.rootfs().to_owned());
                    roots.len()
                });
                leases.push(lease);
                lang.placement = Placement {
                    root,
                    image: Some(ImageRef { name: crate::image::full_name(&lang.rootfs), digest: record.digest }),
                    ..Placement::default()
                };
            }
            Err(why) => {
                let why = format!(
                    "image {} is not usable ({why}); build and import it: scripts/build-rootfs {}, codeexec image import target/images/{}",
                    lang.rootfs, lang.id, lang.id
                );
                lang.placement = if host_fallback {
                    tracing::warn!(language = %lang.id, "{why}: running it on the host's root (images.host_fallback)");
                    Placement { fallback: Some(why), ..Placement::default() }
                } else {
                    tracing::warn!(language = %lang.id, "{why}: unavailable");
                    Placement { missing: Some(why), ..Placement::default() }
                };
            }
        }
    }
    (roots, leases)
}

fn host() -> String {
    "host".into()
}

/// How the entry point is found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// The main file if given, else the first file.
    #[default]
    File,
    /// Java: `code` goes to `<PublicClass>.java`; `{main_class}` is the class declaring
    /// `public static void main`.
    JavaClass,
}

/// When the syntax check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// Before the program, every time (a language that runs a file as it reads it: bash).
    Always,
    /// Only when the program failed, to tell a syntax error from a runtime error (a
    /// language that parses the whole entry file before running any of it: a failed check
    /// then means nothing ran).
    OnFailure,
}

/// `[syntax]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntaxStage {
    /// The check.
    pub command: Vec<String>,
    /// When it runs.
    pub when: When,
    /// How its messages are parsed.
    pub diagnostics: Format,
    /// Its limits (over the syntax defaults).
    #[serde(default)]
    pub limits: StageLimits,
    /// More environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// `[compile]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompileStage {
    /// The compiler command; what it leaves in /sandbox goes to the run.
    pub command: Vec<String>,
    /// How its messages are parsed.
    pub diagnostics: Format,
    /// Its limits (over the compile defaults; requests cannot change them).
    #[serde(default)]
    pub limits: StageLimits,
    /// More environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// `[run]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunStage {
    /// The program's command.
    pub command: Vec<String>,
    /// How an uncaught error on stderr is parsed.
    pub errors: Option<ErrorFormat>,
    /// Uncaught error types that mean the program ran out of memory (`memory_limit`).
    #[serde(default)]
    pub out_of_memory: Vec<String>,
    /// The language's default limits (over the configured defaults; a request's own win).
    #[serde(default)]
    pub limits: StageLimits,
    /// More environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// More environment for a live run (streamed or interactive): what makes the
    /// language's output unbuffered, so a `print` arrives when printed.
    #[serde(default)]
    pub live_env: BTreeMap<String, String>,
}

/// Limits a stage sets; those left out come from elsewhere (see each stage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageLimits {
    /// CPU time, ms.
    pub cpu_time_ms: Option<u64>,
    /// Wall time, ms.
    pub wall_time_ms: Option<u64>,
    /// Memory, MiB.
    pub memory_mb: Option<u64>,
    /// Processes and threads.
    pub processes: Option<u64>,
    /// Output per stream, KiB.
    pub output_kb: Option<u64>,
    /// Largest file, KiB.
    pub file_size_kb: Option<u64>,
    /// Size of /sandbox and of /tmp each, MiB.
    pub disk_mb: Option<u64>,
}

impl StageLimits {
    /// These limits over `base`.
    pub fn over(&self, base: &Limits) -> Limits {
        let ms = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_millis);
        let mib = |v: Option<u64>, d: u64| v.map_or(d, |v| v.saturating_mul(1 << 20));
        let kib = |v: Option<u64>, d: u64| v.map_or(d, |v| v.saturating_mul(1 << 10));
        Limits {
            cpu_time: ms(self.cpu_time_ms, base.cpu_time),
            wall_time: ms(self.wall_time_ms, base.wall_time),
            memory_bytes: mib(self.memory_mb, base.memory_bytes),
            processes: self.processes.map_or(base.processes, |p| u32::try_from(p).unwrap_or(u32::MAX)),
            output_bytes: kib(self.output_kb, base.output_bytes),
            file_size_bytes: kib(self.file_size_kb, base.file_size_bytes),
            disk_bytes: mib(self.disk_mb, base.disk_bytes),
            ..*base
        }
    }

    /// These limits over a table in the API's units (the request-visible ones).
    pub fn over_table(&self, base: &LimitTable) -> LimitTable {
        LimitTable {
            cpu_time_ms: self.cpu_time_ms.unwrap_or(base.cpu_time_ms),
            wall_time_ms: self.wall_time_ms.unwrap_or(base.wall_time_ms),
            memory_mb: self.memory_mb.unwrap_or(base.memory_mb),
            processes: self.processes.unwrap_or(base.processes),
            output_kb: self.output_kb.unwrap_or(base.output_kb),
            file_size_kb: self.file_size_kb.unwrap_or(base.file_size_kb),
        }
    }
}

/// What a syntax check gets unless its language says otherwise.
pub fn syntax_defaults() -> Limits {
    Limits {
        cpu_time: Duration::from_secs(5),
        wall_time: Duration::from_secs(10),
        memory_bytes: 256 << 20,
        processes: 32,
        output_bytes: 64 << 10,
        ..Limits::default()
    }
}

/// What a compiler gets unless its language says otherwise.
pub fn compile_defaults() -> Limits {
    Limits {
        cpu_time: Duration::from_secs(10),
        wall_time: Duration::from_secs(20),
        memory_bytes: 512 << 20,
        processes: 64,
        output_bytes: 256 << 10,
        file_size_bytes: 64 << 20,
        disk_bytes: 128 << 20,
        ..Limits::default()
    }
}

/// A definition that does not load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("language definition {file}: {message}")]
pub struct DefinitionError {
    /// The file.
    pub file: String,
    /// What is wrong, naming the field.
    pub message: String,
}

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
    pub supported: Vec<String>,
}

impl fmt::Display for Unknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unsupported language {:?}; supported: {}", self.name, self.supported.join(", "))
    }
}

impl std::error::Error for Unknown {}

/// The built-in definitions (`rootfs/languages/*.toml`), or those of `dir`.
pub fn load(dir: Option<&Path>) -> Result<Vec<Language>, DefinitionError> {
    let files: Vec<(String, String)> = match dir {
        None => embedded::BUILTIN.iter().map(|(n, t)| ((*n).to_owned(), (*t).to_owned())).collect(),
        Some(dir) => read_dir(dir)?,
    };
    let mut out: Vec<Language> = Vec::with_capacity(files.len());
    for (file, text) in files {
        let err = |message: String| DefinitionError { file: file.clone(), message };
        let lang: Language = toml::from_str(&text).map_err(|e| err(e.to_string().trim().replace('\n', " ")))?;
        lang.check().map_err(err)?;
        for other in &out {
            if let Some(name) = lang.names().find(|n| other.names().any(|o| o == *n)) {
                return Err(err(format!("the name {name:?} is already used by language {:?}", other.id)));
            }
        }
        out.push(lang);
    }
    if out.is_empty() {
        return Err(DefinitionError {
            file: dir.map_or("(built in)".into(), |d| d.display().to_string()),
            message: "no language is defined".into(),
        });
    }
    Ok(out)
}

fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, DefinitionError> {
    let err = |message: String| DefinitionError { file: dir.display().to_string(), message };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| err(e.to_string()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| DefinitionError { file: p.display().to_string(), message: e.to_string() })?;
            Ok((p.display().to_string(), text))
        })
        .collect()
}

impl Language {
    /// Every name a request may use: the id and the aliases, lower case.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.id.as_str()).chain(self.aliases.iter().map(String::as_str))
    }

    /// Whether it compiles before running.
    pub fn compiled(&self) -> bool {
        self.compile.is_some()
    }

    fn check(&self) -> Result<(), String> {
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'+' || b == b'-')
        };
        if !name_ok(&self.id) {
            return Err(format!("id {:?}: lower-case letters, digits, _ + - only", self.id));
        }
        if let Some(a) = self.aliases.iter().find(|a| !name_ok(a)) {
            return Err(format!("aliases: {a:?}: lower-case letters, digits, _ + - only"));
        }
        crate::sandbox::check_relative_path(&self.main_file).map_err(|e| format!("main_file: {e}"))?;
        if let Some(s) = self.sources.iter().find(|s| !s.starts_with('.') || s.len() < 2) {
            return Err(format!("sources: {s:?}: an extension like \".c\""));
        }
        if self.version.is_empty() {
            return Err("version: the command is empty".into());
        }
        check_command("run.command", &self.run.command)?;
        check_env("env", &self.env)?;
        check_env("run.env", &self.run.env)?;
        check_env("run.live_env", &self.run.live_env)?;
        check_limits("run.limits", &self.run.limits)?;
        if let Some(s) = &self.syntax {
            check_command("syntax.command", &s.command)?;
            check_env("syntax.env", &s.env)?;
            check_limits("syntax.limits", &s.limits)?;
        }
        if let Some(c) = &self.compile {
            check_command("compile.command", &c.command)?;
            check_env("compile.env", &c.env)?;
            check_limits("compile.limits", &c.limits)?;
        }
        Ok(())
    }
}

fn check_command(field: &str, command: &[String]) -> Result<(), String> {
    if command.is_empty() {
        return Err(format!("{field}: the command is empty"));
    }
    for arg in command {
        let mut rest = arg.as_str();
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').ok_or_else(|| format!("{field}: {arg:?} has an unclosed {{"))? + open;
            let name = &rest[open + 1..close];
            if !PLACEHOLDERS.contains(&name) {
                return Err(format!("{field}: unknown placeholder {{{name}}} (known: {})", PLACEHOLDERS.join(", ")));
            }
            if name == "sources" && arg != "{sources}" {
                return Err(format!("{field}: {{sources}} must be an argument of its own"));
            }
            rest = &rest[close + 1..];
        }
    }
    Ok(())
}

fn check_env(field: &str, env: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(format!("{field}: {k:?} is not a valid variable"));
        }
        check_command(field, std::slice::from_ref(v))?;
    }
    Ok(())
}

fn check_limits(field: &str, l: &StageLimits) -> Result<(), String> {
    l.over(&Limits::default()).validate().map_err(|e| format!("{field}: {e}"))
}

impl Registry {
    /// Asks every language for its version, each in a sandbox of `runner`, all at once.
    pub fn probe(runner: &Runner, languages: Vec<Language>) -> Registry {
        let found: Vec<Availability> = std::thread::scope(|scope| {
            let probes: Vec<_> = languages.iter().map(|lang| scope.spawn(move || probe_one(runner, lang))).collect();
            probes
                .into_iter()
                .map(|p| {
                    p.join()
                        .unwrap_or_else(|_| Availability::Unavailable { reason: "the version check panicked".into() })
                })
                .collect()
        });
        let entries: Vec<(Language, Availability)> = languages.into_iter().zip(found).collect();
        for (lang, availability) in &entries {
            match availability {
                Availability::Available { version } => tracing::info!(language = %lang.id, %version, "available"),
                Availability::Unavailable { reason } => tracing::warn!(language = %lang.id, %reason, "unavailable"),
            }
        }
        Registry { entries }
    }

    /// A registry with given availabilities (for tests of the layers above).
    pub fn with(languages: Vec<Language>, availability: impl Fn(&Language) -> Availability) -> Registry {
        Registry {
            entries: languages
                .into_iter()
                .map(|l| {
                    let a = availability(&l);
                    (l, a)
                })
                .collect(),
        }
    }

    /// The language `name` answers to (any alias, any case).
    pub fn find(&self, name: &str) -> Result<&(Language, Availability), Unknown> {
        let lower = name.trim().to_ascii_lowercase();
        self.entries.iter().find(|(l, _)| l.names().any(|n| n == lower)).ok_or_else(|| Unknown {
            name: name.to_owned(),
            supported: self.entries.iter().map(|(l, _)| l.id.clone()).collect(),
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
    let all = load(None).unwrap_or_default();
    Registry::with(all, |_| Availability::Available { version: String::new() }).find(name).map(|(l, _)| l.clone())
}

/// Asks one language for its version. codeexec's own failures (not the toolchain's) are
/// retried twice, so a passing hiccup at start does not hide a language for the daemon's
/// whole life.
fn probe_one(runner: &Runner, lang: &Language) -> Availability {
    if let Some(why) = &lang.placement.missing {
        return Availability::Unavailable { reason: why.clone() };
    }
    let limits = Limits {
        cpu_time: Duration::from_secs(10),
        wall_time: Duration::from_secs(20),
        memory_bytes: 512 << 20,
        processes: 64,
        ..Limits::default()
    };
    let env = lang.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let req =
        RunRequest { argv: lang.version.clone(), env, limits, root: lang.placement.root, ..RunRequest::default() };
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
        tracing::warn!(language = %lang.id, error = %why, "the version check failed in codeexec; retrying");
    };
    if outcome.status != Status::Ok {
        let why = outcome.message.unwrap_or_else(|| outcome.status.as_str().to_owned());
        return Availability::Unavailable { reason: format!("`{}` failed: {why}", lang.version.join(" ")) };
    }
    let text =
        String::from_utf8_lossy(if outcome.stdout.is_empty() { &outcome.stderr } else { &outcome.stdout }).into_owned();
    Availability::Available { version: parse_version(&text) }
}

/// The first version-looking token (digits and dots, with a dot) of the first line, with
/// what precedes its digits dropped: `Python 3.11.2` -> `3.11.2`, `v20.20.2`, `go1.19.8`,
/// `"17.0.17"`, `GNU bash, version 5.2.15(1)-release`, `ruby 3.1.2p20`.
fn parse_version(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    line.split_whitespace()
        .filter_map(|t| {
            let digits = t.trim_start_matches(|c: char| !c.is_ascii_digit());
            let v: String = digits.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let v = v.trim_end_matches('.');
            v.contains('.').then(|| v.to_owned())
        })
        .next()
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
        assert_eq!(parse_version("go version go1.19.8 linux/amd64"), "1.19.8");
        assert_eq!(parse_version("openjdk version \"17.0.17\" 2025-10-21"), "17.0.17");
        assert_eq!(parse_version("ruby 3.1.2p20 (2022-04-12 revision 4491bb740a) [x86_64-linux-gnu]"), "3.1.2");
        assert_eq!(parse_version("gcc (Debian 12.2.0-14+deb12u1) 12.2.0"), "12.2.0");
        assert_eq!(parse_version("weird"), "weird");
    }

    #[test]
    fn the_built_in_definitions_load() {
        let all = load(None).unwrap();
        let ids: Vec<&str> = all.iter().map(|l| l.id.as_str()).collect();
        for id in ["bash", "c", "cpp", "go", "java", "javascript", "python", "ruby", "rust", "typescript"] {
            assert!(ids.contains(&id), "no {id} in {ids:?}");
        }
        for l in &all {
            assert_eq!(
                l.compiled(),
                ["c", "cpp", "go", "java", "rust", "typescript"].contains(&l.id.as_str()),
                "{}",
                l.id
            );
        }
    }

    #[test]
    fn aliases_find_languages_in_any_case() {
        let r = Registry::with(load(None).unwrap(), |_| Availability::Available { version: "1".into() });
        assert_eq!(r.find("Py").unwrap().0.id, "python");
        assert_eq!(r.find("node").unwrap().0.id, "javascript");
        assert_eq!(r.find(" JS ").unwrap().0.id, "javascript");
        assert_eq!(r.find("c++").unwrap().0.id, "cpp");
        assert_eq!(r.find("golang").unwrap().0.id, "go");
        let e = r.find("cobol").unwrap_err();
        assert!(e.to_string().starts_with("unsupported language \"cobol\"; supported: bash, c, cpp"), "{e}");
    }

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (n, t) in files {
            std::fs::write(d.path().join(n), t).unwrap();
        }
        d
    }

    const MINIMAL: &str = "id = \"x\"\nname = \"X\"\nmain_file = \"main.x\"\nversion = [\"x\", \"--version\"]\n[run]\ncommand = [\"x\", \"{main}\"]\n";

    #[test]
    fn a_broken_definition_names_its_file_and_field() {
        let d = dir_with(&[("x.toml", MINIMAL)]);
        assert_eq!(load(Some(d.path())).unwrap()[0].id, "x");
        let cases = [
            (MINIMAL.replace("name = \"X\"\n", ""), "missing field `name`"),
            (format!("{MINIMAL}colour = 1\n"), "unknown field `colour`"),
            (MINIMAL.replace("{main}", "{mian}"), "run.command: unknown placeholder {mian}"),
            (MINIMAL.replace("\"x\", \"{main}\"", ""), "run.command: the command is empty"),
            (MINIMAL.replace("main.x", "../main.x"), "main_file"),
            (format!("{MINIMAL}[run.limits]\nmemory_mb = 0\n"), "run.limits: memory"),
            (
                format!("{MINIMAL}[syntax]\ncommand = [\"x\"]\nwhen = \"sometimes\"\ndiagnostics = \"gcc\"\n"),
                "unknown variant `sometimes`",
            ),
            (
                format!("{MINIMAL}[compile]\ncommand = [\"cc\", \"-o{{sources}}\"]\ndiagnostics = \"gcc\"\n"),
                "{sources} must be an argument of its own",
            ),
            (
                format!("{MINIMAL}[compile]\ncommand = [\"cc\"]\ndiagnostics = \"fortran\"\n"),
                "unknown variant `fortran`",
            ),
        ];
        for (text, needle) in cases {
            let d = dir_with(&[("x.toml", &text)]);
            let e = load(Some(d.path())).unwrap_err().to_string();
            assert!(e.contains("x.toml") && e.contains(needle), "{e:?} should name x.toml and {needle:?}");
        }
        let d = dir_with(&[
            ("a.toml", MINIMAL),
            ("b.toml", &MINIMAL.replace("id = \"x\"", "id = \"y\"\naliases = [\"x\"]")),
        ]);
        let e = load(Some(d.path())).unwrap_err().to_string();
        assert!(e.contains("b.toml") && e.contains("\"x\" is already used"), "{e}");
    }

    #[test]
    fn a_missing_image_makes_a_language_unavailable_or_falls_back_when_allowed() {
        let t = tempfile::tempdir().unwrap();
        let store = crate::image::Store::open(t.path()).unwrap();
        let mut langs = load(None).unwrap();
        langs.retain(|l| l.id == "python" || l.id == "bash");
        langs.iter_mut().filter(|l| l.id == "python").for_each(|l| l.rootfs = "codeexec/python:bookworm".into());
        let (roots, leases) = place(&mut langs, Some(&store), false);
        assert!(roots.is_empty() && leases.is_empty());
        let py = langs.iter().find(|l| l.id == "python").unwrap();
        let why = py.placement.missing.as_deref().unwrap();
        assert!(why.contains("codeexec/python:bookworm") && why.contains("codeexec image import"), "{why}");
        assert_eq!(langs.iter().find(|l| l.id == "bash").unwrap().placement, Placement::default());
        let (_, _) = place(&mut langs, Some(&store), true);
        let py = langs.iter().find(|l| l.id == "python").unwrap();
        assert_eq!(
            (py.placement.root, py.placement.missing.is_none(), py.placement.fallback.is_some()),
            (0, true, true)
        );
    }
}
