//! Sessions: a sandbox kept alive between requests, its program a small REPL driver of the
//! session's language (`session/driver.*`) that evaluates cells in one interpreter, so
//! variables, imports and files survive from one cell to the next. A session is a run
//! that has not ended: the same prepared sandbox, cgroup and slot as any run (its limits
//! span the session), released with [`Prepared::release`] instead of being watched to its
//! end. Cells go to the driver's stdin behind a header line; the cell's output comes back
//! on stdout and stderr as it is written, and the driver ends each cell with a record
//! separator, the cell's nonce and one JSON line (status, value, display data).
//!
//! Files are read and written from the host through a descriptor of the sandbox's
//! `/sandbox` (`session/files.rs`), never by a path that could follow a symlink the
//! sandbox wrote. Idle sessions are frozen with the cgroup freezer and thawed for a cell.

mod cell;
mod files;

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

pub use cell::{Cell, CellOutcome, Display, ErrorInfo, MAX_CODE_BYTES};
pub use files::{FileError, MAX_ARTIFACT_BYTES, MAX_ARTIFACTS};

use super::prepared::Prepared;
use super::{Inner, RunError, Runner, chain, plan};
use crate::limit::Limits;

/// The REPL drivers, one per kind of interpreter.
const PYTHON: &str = include_str!("session/driver.py");
const NODE: &str = include_str!("session/driver.js");
const RUBY: &str = include_str!("session/driver.rb");
const SHELL: &str = include_str!("session/driver.sh");

/// Which driver a session runs: the interpreter that keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// `python3`: a namespace; the last expression's `repr` is the value; matplotlib
    /// figures come back as PNG.
    Python,
    /// `node`: one global scope; the completion value is the value.
    JavaScript,
    /// `node` with each cell transpiled by the `typescript` package first.
    TypeScript,
    /// `ruby`: one binding; the last expression's `inspect` is the value.
    Ruby,
    /// `bash`: cells are `eval`'d in one shell; compiled languages' sessions use it too.
    Shell,
}

impl Driver {
    /// The command that starts it.
    fn argv(self) -> Vec<String> {
        let (cmd, flag, code) = match self {
            Driver::Python => ("python3", "-c", PYTHON),
            Driver::JavaScript | Driver::TypeScript => ("node", "-e", NODE),
            Driver::Ruby => ("ruby", "-e", RUBY),
            Driver::Shell => ("bash", "-c", SHELL),
        };
        vec![cmd.into(), flag.into(), code.into()]
    }

    /// Its environment on top of the base one.
    fn env(self) -> Vec<(String, String)> {
        let pairs: &[(&str, &str)] = match self {
            // Debian's matplotlib looks for /etc/matplotlibrc, which the host root's
            // generated /etc lacks; the same file is in /usr
            Driver::Python => &[
                ("PYTHONDONTWRITEBYTECODE", "1"),
                ("MPLBACKEND", "Agg"),
                ("MPLCONFIGDIR", "/tmp"),
                ("MATPLOTLIBRC", "/usr/share/matplotlib/mpl-data/matplotlibrc"),
            ],
            Driver::JavaScript => &[],
            Driver::TypeScript => &[("CODEEXEC_TS", "1"), ("NODE_PATH", "/usr/lib/node_modules")],
            Driver::Ruby => &[],
            Driver::Shell => &[],
        };
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// Whether the driver ends a cell that runs out of time by itself, so the session
    /// survives it (otherwise the session is killed with the cell).
    pub fn stops_cells(self) -> bool {
        !matches!(self, Driver::Shell)
    }
}

/// What a session is opened with.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    /// Its driver.
    pub driver: Driver,
    /// Limits of the whole session: memory, processes, disk, CPU bandwidth, and CPU time
    /// over its life (`wall_time` is unused: cells have their own, and sessions a lifetime).
    pub limits: Limits,
    /// Which root (as `RunRequest::root`).
    pub root: usize,
    /// More environment for the driver and everything it starts.
    pub env: Vec<(String, String)>,
}

/// A live session: its sandbox, the driver's streams, and `/sandbox` for file access.
#[derive(Debug)]
pub struct Session {
    sandbox: Prepared,
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    /// `/sandbox` inside, opened `O_PATH` through PID 1's root.
    workdir: OwnedFd,
    /// The host id files written into it are given (the program's inside).
    owner: u32,
    driver: Driver,
    limits: Limits,
    /// Whether the driver still runs (false: every cell answers that the session ended).
    alive: bool,
    frozen: bool,
    /// Cleared when freezing failed (a v1 host without cgroup2): it is not tried again.
    freezer: bool,
}

impl Runner {
    /// Opens a session: prepares a sandbox (a warm one when there is one), starts the
    /// driver in it and waits until it runs. `Err(Busy)` when no slot is free.
    pub fn open_session(&self, req: &SessionRequest) -> Result<Session, RunError> {
        req.limits.validate()?;
        if req.root > self.inner.config.extra_roots.len() {
            return Err(RunError::Invalid(format!("no root {}", req.root)));
        }
        let mut env = req.driver.env();
        env.extend(req.env.iter().cloned());
        let run = super::RunRequest {
            argv: req.driver.argv(),
            env,
            limits: req.limits.clone(),
            root: req.root,
            ..super::RunRequest::default()
        };
        let (start, _) = plan::start_request(&run)?;
        let mut sandbox = match self.pools.get(req.root).and_then(super::pool::Pool::take) {
            Some(s) => s,
            None => {
                let s = self.inner.prepare(&start.sizes, req.root, &super::prepared::Extras::default())?;
                s.wait_ready()?;
                s
            }
        };
        Session::start(&self.inner, &mut sandbox, &req.limits, &start).map(|(streams, workdir, owner)| Session {
            owner,
            stdin: streams.0,
            stdout: streams.1,
            stderr: streams.2,
            workdir,
            sandbox,
            driver: req.driver,
            limits: req.limits.clone(),
            alive: true,
            frozen: false,
            freezer: true,
        })
    }

    /// Ends a session: its sandbox is torn down on the cleaner's thread.
    pub fn close_session(&self, session: Session) {
        self.cleaner.discard(session.sandbox);
    }
}

type Fds = (OwnedFd, OwnedFd, OwnedFd);

impl Session {
    fn start(
        runner: &Inner,
        sandbox: &mut Prepared,
        limits: &Limits,
        start: &crate::sandbox::StartRequest,
    ) -> Result<(Fds, OwnedFd, u32), RunError> {
        let streams = sandbox.release(limits, start)?;
        let workdir = files::open_workdir(sandbox.pid1().pid.as_raw())
            .map_err(|e| RunError::Invalid(format!("opening the session's /sandbox: {}", chain(&e))))?;
        Ok((streams, workdir, sandbox.program_host_id(runner)))
    }

    /// Its driver.
    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// Its limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether its driver still runs.
    pub fn is_alive(&self) -> bool {
        self.alive
    }

    /// Whether it is frozen now.
    pub fn is_frozen(&self) -> bool {
        self.frozen || !self.freezer
    }

    /// Stops every process of the session until [`Session::thaw`] (idle sessions cost no
    /// CPU and can be swapped out by nothing but the kernel's own reclaim).
    pub fn freeze(&mut self) -> Result<(), RunError> {
        if !self.frozen && self.freezer {
            if let Err(e) = self.sandbox.group()?.freeze(true) {
                self.freezer = false;
                return Err(e.into());
            }
            self.frozen = true;
        }
        Ok(())
    }

    /// Lets a frozen session run again.
    pub fn thaw(&mut self) -> Result<(), RunError> {
        if self.frozen {
            self.sandbox.group()?.freeze(false)?;
            self.frozen = false;
        }
        Ok(())
    }

    /// Runs one cell (thawing the session first) and says how it went; a failure of ours
    /// is an `internal_error` outcome, and a session whose driver is gone answers so.
    pub fn execute(&mut self, cell: &Cell) -> CellOutcome {
        if !self.alive {
            return CellOutcome::ended("the session's interpreter has ended; open a new session");
        }
        if let Err(e) = self.thaw() {
            return CellOutcome::internal(format!("thawing the session: {}", chain(&e)));
        }
        let started = Instant::now();
        let mut out = cell::exchange(self, cell);
        out.wall_time = started.elapsed();
        if !out.alive {
            self.alive = false;
        }
        out
    }

    /// The wall time a cell may have beyond its own limit before the session is killed
    /// (the driver needs a moment to stop the cell and answer).
    fn grace(&self) -> Duration {
        if self.driver.stops_cells() { Duration::from_secs(2) } else { Duration::ZERO }
    }
}
