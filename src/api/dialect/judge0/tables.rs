//! Judge0 CE 1.13.1's fixed tables: its statuses, the language ids its clients know for
//! codeexec's languages, and `/config_info`.

use serde_json::{Value, json};

/// The 14 statuses, verbatim (`app/enumerations/status.rb`).
pub(super) const STATUSES: [(u8, &str); 14] = [
    (1, "In Queue"),
    (2, "Processing"),
    (3, "Accepted"),
    (4, "Wrong Answer"),
    (5, "Time Limit Exceeded"),
    (6, "Compilation Error"),
    (7, "Runtime Error (SIGSEGV)"),
    (8, "Runtime Error (SIGXFSZ)"),
    (9, "Runtime Error (SIGFPE)"),
    (10, "Runtime Error (SIGABRT)"),
    (11, "Runtime Error (NZEC)"),
    (12, "Runtime Error (Other)"),
    (13, "Internal Error"),
    (14, "Exec Format Error"),
];

/// A status's description.
pub(super) fn describe(id: u8) -> &'static str {
    STATUSES.iter().find(|(i, _)| *i == id).map_or("Internal Error", |(_, d)| d)
}

/// A Judge0 language id: the native language, how its name is written (`{}` is the
/// version), and whether it is listed in `/languages` (the ids of the
/// hosted ce.judge0.com are accepted, not listed).
pub(super) struct Id {
    pub(super) id: u32,
    pub(super) native: &'static str,
    pub(super) name: &'static str,
    pub(super) listed: bool,
}

const fn id(id: u32, native: &'static str, name: &'static str, listed: bool) -> Id {
    Id { id, native, name, listed }
}

/// 1.13.1's ids (`db/languages/active.rb`) for codeexec's languages, then the hosted ones.
pub(super) const IDS: [Id; 31] = [
    id(46, "bash", "Bash ({})", true),
    id(48, "c", "C (GCC {})", true),
    id(49, "c", "C (GCC {})", true),
    id(50, "c", "C (GCC {})", true),
    id(52, "cpp", "C++ (GCC {})", true),
    id(53, "cpp", "C++ (GCC {})", true),
    id(54, "cpp", "C++ (GCC {})", true),
    id(60, "go", "Go ({})", true),
    id(62, "java", "Java (OpenJDK {})", true),
    id(63, "javascript", "JavaScript (Node.js {})", true),
    id(71, "python", "Python ({})", true),
    id(72, "ruby", "Ruby ({})", true),
    id(73, "rust", "Rust ({})", true),
    id(74, "typescript", "TypeScript ({})", true),
    // the hosted service's newer ids, for clients that hard-code them
    id(91, "java", "Java (JDK {})", false),
    id(92, "python", "Python ({})", false),
    id(93, "javascript", "JavaScript (Node.js {})", false),
    id(94, "typescript", "TypeScript ({})", false),
    id(95, "go", "Go ({})", false),
    id(97, "javascript", "JavaScript (Node.js {})", false),
    id(100, "python", "Python ({})", false),
    id(101, "typescript", "TypeScript ({})", false),
    id(102, "javascript", "JavaScript (Node.js {})", false),
    id(103, "c", "C (GCC {})", false),
    id(105, "cpp", "C++ (GCC {})", false),
    id(106, "go", "Go ({})", false),
    id(107, "go", "Go ({})", false),
    id(108, "rust", "Rust ({})", false),
    id(109, "python", "Python ({})", false),
    id(113, "python", "Python ({})", false),
    id(43, "plain", "Plain Text", false),
];

/// The id's entry.
pub(super) fn find(id: i64) -> Option<&'static Id> {
    IDS.iter().find(|l| i64::from(l.id) == id && l.native != "plain")
}

/// The bounds a submission's limits are checked against, and their defaults: (field,
/// default, least, most). Judge0's own (`helpers/config.rb`), but `number_of_runs` at most
/// the native 10.
pub(super) const LIMITS: [(&str, f64, f64, f64); 8] = [
    ("cpu_time_limit", 5.0, 0.0, 15.0),
    ("cpu_extra_time", 1.0, 0.0, 5.0),
    ("wall_time_limit", 10.0, 1.0, 20.0),
    ("memory_limit", 128_000.0, 2048.0, 512_000.0),
    ("stack_limit", 64_000.0, 0.0, 128_000.0),
    ("max_processes_and_or_threads", 60.0, 1.0, 120.0),
    ("max_file_size", 1024.0, 0.0, 4096.0),
    ("number_of_runs", 1.0, 1.0, 10.0),
];

/// The most submissions a batch may hold.
pub(super) const MAX_BATCH: usize = 20;

/// `GET /config_info`: every key the judge0 SDK requires, with codeexec's values.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub(super) fn config_info() -> Value {
    let lim = |name: &str| LIMITS.iter().find(|l| l.0 == name).map_or((0.0, 0.0), |l| (l.1, l.3));
    let (cpu, max_cpu) = lim("cpu_time_limit");
    let (extra, max_extra) = lim("cpu_extra_time");
    let (wall, max_wall) = lim("wall_time_limit");
    let (mem, max_mem) = lim("memory_limit");
    let (stack, max_stack) = lim("stack_limit");
    let (procs, max_procs) = lim("max_processes_and_or_threads");
    let (fsize, max_fsize) = lim("max_file_size");
    let (runs, max_runs) = lim("number_of_runs");
    json!({
        "maintenance_mode": false,
        "enable_wait_result": true,
        "enable_compiler_options": false,
        "allowed_languages_for_compile_options": [],
        "enable_command_line_arguments": true,
        "enable_submission_delete": true,
        "enable_callbacks": true,
        "callbacks_max_tries": 5,
        "callbacks_timeout": 10.0,
        "enable_additional_files": false,
        "max_queue_size": 1000,
        "cpu_time_limit": cpu, "max_cpu_time_limit": max_cpu,
        "cpu_extra_time": extra, "max_cpu_extra_time": max_extra,
        "wall_time_limit": wall, "max_wall_time_limit": max_wall,
        "memory_limit": mem as u64, "max_memory_limit": max_mem as u64,
        "stack_limit": stack as u64, "max_stack_limit": max_stack as u64,
        "max_processes_and_or_threads": procs as u64, "max_max_processes_and_or_threads": max_procs as u64,
        "enable_per_process_and_thread_time_limit": false,
        "allow_enable_per_process_and_thread_time_limit": false,
        "enable_per_process_and_thread_memory_limit": false,
        "allow_enable_per_process_and_thread_memory_limit": false,
        "max_file_size": fsize as u64, "max_max_file_size": max_fsize as u64,
        "number_of_runs": runs as u64, "max_number_of_runs": max_runs as u64,
        "redirect_stderr_to_stdout": false,
        "max_extract_size": 10240,
        "enable_batched_submissions": true,
        "max_submission_batch_size": MAX_BATCH,
        "submission_cache_duration": 1.0,
        "use_docs_as_homepage": false,
        "allow_enable_network": false,
        "enable_network": false,
    })
}
