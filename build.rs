//! Compiles every seccomp policy in `seccomp/*.json` to BPF at build time and embeds the
//! programs in the binary (`$OUT_DIR/seccomp_programs.rs`). A policy that does not parse,
//! names an unknown syscall, or has a rule or a magic argument without a `"comment"` fails
//! the build: a broken policy must never turn into a sandbox that runs unfiltered.
//!
//! The JSON is seccompiler's format with one addition: a filter may carry a `"comment"`,
//! which is stripped here because seccompiler rejects unknown fields.
//!
//! The filters of a profile are chained into one program at run time (`src/seccomp.rs`),
//! which gives the same verdicts as installing them one by one only if every filter lets
//! what it does not match through (`mismatch_action` allow), matches with a final action
//! (errno, trap, kill), and no two filters match the same syscall. All three are checked
//! here, and the filters are emitted strictest action first.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use seccompiler::{BpfProgram, TargetArch};
use serde_json::Value;

fn main() {
    println!("cargo:rerun-if-changed=seccomp");
    let arch = target_arch();
    let mut profiles = BTreeMap::new();
    let mut entries: Vec<_> = std::fs::read_dir("seccomp")
        .expect("the seccomp/ directory is part of the source tree")
        .map(|e| e.expect("readable seccomp/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().and_then(|s| s.to_str()).expect("policy file names are UTF-8").to_owned();
        profiles.insert(name, compile(&path, arch));
    }
    assert!(profiles.contains_key("default"), "seccomp/default.json is required");
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("seccomp_programs.rs");
    std::fs::write(&out, render(&profiles)).expect("writing the generated seccomp programs");
    embed_languages();
}

/// `rootfs/languages/*.toml`, compiled in as `(file name, text)` pairs; they are parsed and
/// validated when the daemon starts (and by a unit test), where errors name file and field.
fn embed_languages() {
    println!("cargo:rerun-if-changed=rootfs/languages");
    let mut files: Vec<_> = std::fs::read_dir("rootfs/languages")
        .expect("the rootfs/languages/ directory is part of the source tree")
        .map(|e| e.expect("readable rootfs/languages/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut s = String::from(
        "/// The built-in language definitions: (file name, TOML).\npub(crate) const BUILTIN: &[(&str, &str)] = &[\n",
    );
    for path in files {
        let name = path.file_name().and_then(|n| n.to_str()).expect("language file names are UTF-8");
        let abs = std::fs::canonicalize(&path).expect("a language file's absolute path");
        writeln!(s, "    ({name:?}, include_str!({:?})),", abs.display().to_string()).expect("write to String");
    }
    s.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("languages.rs");
    std::fs::write(&out, s).expect("writing the embedded language definitions");
}

fn target_arch() -> TargetArch {
    match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => TargetArch::x86_64,
        Ok("aarch64") => TargetArch::aarch64,
        Ok("riscv64") => TargetArch::riscv64,
        other => panic!("no seccomp support for target architecture {other:?}"),
    }
}

/// A compiled filter: its name, its match action's precedence (0 = strictest), the program.
type Compiled = (String, u8, BpfProgram);

fn compile(path: &Path, arch: TargetArch) -> Vec<Compiled> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let filters =
        doc.as_object_mut().unwrap_or_else(|| panic!("{}: the top level must be an object of filters", path.display()));
    let mut precedence = BTreeMap::new();
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    for (name, filter) in filters.iter_mut() {
        check_comments(path, name, filter);
        precedence.insert(name.clone(), check_actions(path, name, filter));
        for rule in filter["filter"].as_array().into_iter().flatten() {
            let syscall = rule["syscall"].as_str().unwrap_or("?").to_owned();
            if let Some(other) = claimed.get(&syscall).filter(|o| *o != name) {
                panic!(
                    "{}: {syscall} is matched by filters {other} and {name}; chaining needs disjoint filters",
                    path.display()
                );
            }
            claimed.insert(syscall, name.clone());
        }
        if let Some(obj) = filter.as_object_mut() {
            obj.remove("comment");
        }
    }
    let stripped = serde_json::to_vec(&doc).expect("re-serialising parsed JSON");
    let map =
        seccompiler::compile_from_json(stripped.as_slice(), arch).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out: Vec<Compiled> = map.into_iter().map(|(n, p)| (n.clone(), precedence[&n], p)).collect();
    out.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    out
}

/// Checks a filter fits chaining (see the module docs); returns its action's precedence.
fn check_actions(path: &Path, name: &str, filter: &Value) -> u8 {
    let mismatch = &filter["mismatch_action"];
    assert!(
        mismatch == "allow",
        "{}: filter {name}: mismatch_action must be \"allow\", not {mismatch}",
        path.display()
    );
    match &filter["match_action"] {
        Value::String(s) if s == "kill_process" => 0,
        Value::String(s) if s == "kill_thread" => 1,
        Value::String(s) if s == "trap" => 2,
        Value::Object(o) if o.contains_key("errno") => 3,
        other => {
            panic!(
                "{}: filter {name}: match_action {other} cannot be chained (use errno, trap or kill)",
                path.display()
            )
        }
    }
}

/// Habit from STYLE.md: every rule and every magic argument says why it is there.
fn check_comments(path: &Path, filter_name: &str, filter: &Value) {
    let rules = filter["filter"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: filter {filter_name} has no \"filter\" array", path.display()));
    for rule in rules {
        let syscall = rule["syscall"].as_str().unwrap_or("?");
        assert!(
            rule.get("comment").is_some(),
            "{}: filter {filter_name}: rule for {syscall} has no comment",
            path.display()
        );
        for arg in rule.get("args").and_then(Value::as_array).into_iter().flatten() {
            assert!(
                arg.get("comment").is_some(),
                "{}: filter {filter_name}: an argument of {syscall} has no comment",
                path.display()
            );
        }
    }
}

fn render(profiles: &BTreeMap<String, Vec<Compiled>>) -> String {
    let mut s = String::from("// Generated by build.rs from seccomp/*.json. Do not edit.\n");
    s.push_str("pub(crate) static PROFILES: &[Profile] = &[\n");
    for (name, filters) in profiles {
        writeln!(s, "    Profile {{ name: {name:?}, filters: &[").expect("write to String");
        for (fname, _, prog) in filters {
            writeln!(s, "        Filter {{ name: {fname:?}, program: &[").expect("write to String");
            for ins in prog {
                writeln!(
                    s,
                    "            sock_filter {{ code: {:#06x}, jt: {}, jf: {}, k: {:#010x} }},",
                    ins.code, ins.jt, ins.jf, ins.k
                )
                .expect("write to String");
            }
            s.push_str("        ] },\n");
        }
        s.push_str("    ] },\n");
    }
    s.push_str("];\n");
    s
}
