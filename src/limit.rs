//! The resource limits of one run: typed units, defaults, the valid range of each, and
//! the parsers for the human forms the command line takes (`256M`, `1.5s`, `500ms`).

use std::fmt;
use std::time::Duration;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Limits on one run. Every field is enforced; none is advisory.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// CPU time of the whole process tree, from the cgroup's accounting.
    pub cpu_time: Duration,
    /// Wall-clock time from the program's `execve` to its exit.
    pub wall_time: Duration,
    /// Memory of the whole tree (anonymous, page cache and tmpfs), swap disabled.
    pub memory_bytes: u64,
    /// Processes and threads the program may have at once (our PID 1 is not counted).
    pub processes: u32,
    /// Bytes kept of stdout and of stderr, each; more ends the run as `output_limit`.
    pub output_bytes: u64,
    /// Largest file the program may write (`RLIMIT_FSIZE`).
    pub file_size_bytes: u64,
    /// CPU bandwidth in thousandths of a core (`1000` = one core).
    pub cpu_millicores: u32,
    /// Size of each writable tmpfs: `/sandbox`, `/tmp` (and a quarter of it for `/dev/shm`).
    pub disk_bytes: u64,
    /// Open file descriptors per process (`RLIMIT_NOFILE`).
    pub open_files: u32,
    /// Main thread stack (`RLIMIT_STACK`).
    pub stack_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_time: Duration::from_secs(5),
            wall_time: Duration::from_secs(10),
            memory_bytes: 256 * MIB,
            processes: 64,
            output_bytes: 64 * KIB,
            file_size_bytes: 16 * MIB,
            cpu_millicores: 1000,
            disk_bytes: 64 * MIB,
            open_files: 1024,
            stack_bytes: 8 * MIB,
        }
    }
}

/// A limit outside its valid range, or a value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The text is not a size, duration or number.
    #[error("{what}: cannot parse {text:?}: {why}")]
    Parse {
        /// Which limit.
        what: &'static str,
        /// The text given.
        text: String,
        /// What form was expected.
        why: &'static str,
    },
    /// The value parsed but is outside the range codeexec accepts.
    #[error("{what}: {value} is out of range ({range})")]
    Range {
        /// Which limit.
        what: &'static str,
        /// The value, formatted with its unit.
        value: String,
        /// The accepted range, formatted.
        range: String,
    },
}

/// Ranges, with the reason for each bound where it is not obvious.
struct Bounds;
impl Bounds {
    const CPU_TIME: (Duration, Duration) = (Duration::from_millis(1), Duration::from_secs(3600));
    const WALL_TIME: (Duration, Duration) = (Duration::from_millis(1), Duration::from_secs(24 * 3600));
    /// Below 4 MiB not even a dynamic loader and our PID 1 fit.
    const MEMORY: (u64, u64) = (4 * MIB, 256 * GIB);
    /// pids.max counts threads too; one is our PID 1, added on top.
    const PROCESSES: (u64, u64) = (1, 32_768);
    const OUTPUT: (u64, u64) = (1, GIB);
    const FILE_SIZE: (u64, u64) = (0, 64 * GIB);
    const CPU_MILLICORES: (u64, u64) = (10, 1_024_000);
    const DISK: (u64, u64) = (64 * KIB, 64 * GIB);
    /// 3 for stdio plus room for a loader; 20000 is this machine's hard cap, and without
    /// CAP_SYS_RESOURCE a limit can only be lowered.
    const OPEN_FILES: (u64, u64) = (8, 1 << 20);
    const STACK: (u64, u64) = (64 * KIB, 64 * GIB);
}

impl Limits {
    /// Checks every field against its range.
    pub fn validate(&self) -> Result<(), LimitError> {
        check_duration("cpu time", self.cpu_time, Bounds::CPU_TIME)?;
        check_duration("wall time", self.wall_time, Bounds::WALL_TIME)?;
        check_bytes("memory", self.memory_bytes, Bounds::MEMORY)?;
        check_count("processes", self.processes.into(), Bounds::PROCESSES)?;
        check_bytes("output", self.output_bytes, Bounds::OUTPUT)?;
        check_bytes("file size", self.file_size_bytes, Bounds::FILE_SIZE)?;
        check_count("cpus (millicores)", self.cpu_millicores.into(), Bounds::CPU_MILLICORES)?;
        check_bytes("disk", self.disk_bytes, Bounds::DISK)?;
        check_count("open files", self.open_files.into(), Bounds::OPEN_FILES)?;
        check_bytes("stack", self.stack_bytes, Bounds::STACK)
    }
}

fn check_duration(what: &'static str, v: Duration, (lo, hi): (Duration, Duration)) -> Result<(), LimitError> {
    if v < lo || v > hi {
        return Err(LimitError::Range { what, value: format!("{v:?}"), range: format!("{lo:?} to {hi:?}") });
    }
    Ok(())
}

fn check_bytes(what: &'static str, v: u64, (lo, hi): (u64, u64)) -> Result<(), LimitError> {
    if v < lo || v > hi {
        return Err(LimitError::Range {
            what,
            value: ByteSize(v).to_string(),
            range: format!("{} to {}", ByteSize(lo), ByteSize(hi)),
        });
    }
    Ok(())
}

fn check_count(what: &'static str, v: u64, (lo, hi): (u64, u64)) -> Result<(), LimitError> {
    if v < lo || v > hi {
        return Err(LimitError::Range { what, value: v.to_string(), range: format!("{lo} to {hi}") });
    }
    Ok(())
}

/// A byte count that prints with a binary unit (`64K`, `256M`, `1.5G`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        for (unit, size) in [("G", GIB), ("M", MIB), ("K", KIB)] {
            if v >= size && v.is_multiple_of(size) {
                return write!(f, "{}{unit}", v / size);
            }
        }
        write!(f, "{v}")
    }
}

/// Parses `4096`, `64K`, `64KB`, `64KiB`, `256M`, `1.5G` (binary multiples; `B` optional).
pub fn parse_size(what: &'static str, text: &str) -> Result<u64, LimitError> {
    let err = |why| LimitError::Parse { what, text: text.to_owned(), why };
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => KIB,
        "M" | "MB" | "MIB" => MIB,
        "G" | "GB" | "GIB" => GIB,
        _ => return Err(err("expected a number with an optional unit K, M or G")),
    };
    scale(num, mult).ok_or_else(|| err("expected a number with an optional unit K, M or G"))
}

/// Parses `5` (seconds), `5s`, `1.5s`, `500ms`, `2m`.
pub fn parse_duration(what: &'static str, text: &str) -> Result<Duration, LimitError> {
    let err = |why| LimitError::Parse { what, text: text.to_owned(), why };
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let nanos_per = match unit.trim() {
        "" | "s" => 1_000_000_000,
        "ms" => 1_000_000,
        "us" => 1_000,
        "m" | "min" => 60_000_000_000,
        _ => return Err(err("expected a number with an optional unit ms, s or m")),
    };
    let nanos = scale(num, nanos_per).ok_or_else(|| err("expected a number with an optional unit ms, s or m"))?;
    Ok(Duration::from_nanos(nanos))
}

/// Parses a core count such as `1`, `0.5`, `2` into millicores.
pub fn parse_cpus(text: &str) -> Result<u32, LimitError> {
    let err = || LimitError::Parse {
        what: "cpus",
        text: text.to_owned(),
        why: "expected a number of cores such as 1 or 0.5",
    };
    let m = scale(text.trim(), 1000).ok_or_else(err)?;
    u32::try_from(m).map_err(|_| err())
}

/// `num * mult` for a decimal `num` with at most 9 fractional digits, without floats.
fn scale(num: &str, mult: u64) -> Option<u64> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut total = int.checked_mul(mult)?;
    if !frac.is_empty() {
        let digits: u64 = frac.parse().ok()?;
        let denom = 10u64.pow(u32::try_from(frac.len()).ok()?);
        total = total.checked_add(u64::try_from(u128::from(digits) * u128::from(mult) / u128::from(denom)).ok()?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("m", "4096").unwrap(), 4096);
        assert_eq!(parse_size("m", "64K").unwrap(), 65536);
        assert_eq!(parse_size("m", "64kib").unwrap(), 65536);
        assert_eq!(parse_size("m", "256M").unwrap(), 256 * MIB);
        assert_eq!(parse_size("m", "1.5G").unwrap(), 3 * GIB / 2);
        assert!(parse_size("m", "12Q").is_err());
        assert!(parse_size("m", "").is_err());
        assert!(parse_size("m", "-1M").is_err());
        assert!(parse_size("m", "99999999999999999999G").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("t", "5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("t", "1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("t", "500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("t", "2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("t", "5h").is_err());
        assert!(parse_duration("t", "s").is_err());
        assert!(parse_duration("t", "1.2.3s").is_err());
    }

    #[test]
    fn cpus_parse_to_millicores() {
        assert_eq!(parse_cpus("1").unwrap(), 1000);
        assert_eq!(parse_cpus("0.25").unwrap(), 250);
        assert!(parse_cpus("many").is_err());
    }

    #[test]
    fn defaults_are_valid_and_ranges_are_checked() {
        Limits::default().validate().unwrap();
        let l = Limits { memory_bytes: MIB, ..Limits::default() };
        let e = l.validate().unwrap_err().to_string();
        assert_eq!(e, "memory: 1M is out of range (4M to 256G)");
        let l = Limits { processes: 0, ..Limits::default() };
        assert!(l.validate().is_err());
        let l = Limits { cpu_time: Duration::ZERO, ..Limits::default() };
        assert!(l.validate().is_err());
    }

    #[test]
    fn byte_sizes_print_compactly() {
        assert_eq!(ByteSize(64 * KIB).to_string(), "64K");
        assert_eq!(ByteSize(3 * GIB).to_string(), "3G");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }
}
