//! What a checked test keeps of its run: its output up to what a response shows, and the
//! wanted files within the caps of all tests together, spent in the tests' order.

use super::{Keep, TestResult};
use crate::run::{FileContent, OutputFile, RunError};

/// Where a test of a set stands.
pub(super) enum Slot {
    /// Not in yet.
    Pending,
    /// Not run: the set stopped before it.
    Stopped,
    /// Run (or refused).
    Done(Box<Result<TestResult, RunError>>),
}

/// The results of a set of tests as they come in, and the files they may still keep:
/// those are spent in the set's order (whichever finishes first), so the same request
/// keeps the same files.
pub(super) struct Finished {
    pub(super) results: Vec<Slot>,
    /// Every result before it has come in and spent its share.
    frontier: usize,
    /// Files and bytes left for the tests from the frontier on.
    pub(super) left: (usize, u64),
}

impl Finished {
    pub(super) fn new(n: usize, left: (usize, u64)) -> Self {
        Finished { results: (0..n).map(|_| Slot::Pending).collect(), frontier: 0, left }
    }

    /// Stores the result at position `i`.
    pub(super) fn store(&mut self, i: usize, result: Slot) {
        self.results[i] = result;
        while let Some(slot) = self.results.get_mut(self.frontier) {
            match slot {
                Slot::Pending => break,
                Slot::Done(r) => {
                    if let Ok(t) = r.as_mut() {
                        spend(t, &mut self.left);
                    }
                }
                Slot::Stopped => {}
            }
            self.frontier += 1;
        }
    }
}

/// Trims a checked test's result to what it may keep: its output, and the wanted files
/// within the caps of all tests (what is left of them is settled in test order, `spend`).
pub(super) fn trim(r: &mut TestResult, keep: &Keep) {
    if r.returned.as_ref().is_some_and(|v| encoded_len(v, keep.output).is_none()) {
        r.returned = None;
        r.returned_truncated = true;
    }
    let Some(run) = r.run.as_mut() else { return };
    for (out, truncated) in [(&mut run.stdout, &mut run.stdout_truncated), (&mut run.stderr, &mut run.stderr_truncated)]
    {
        if out.len() > keep.output {
            out.truncate(keep.output);
            out.shrink_to_fit();
            *truncated = true;
        }
    }
    let Some(files) = &keep.files else { return };
    let mut left = (files.count, files.bytes);
    run.files.retain(|f| (files.wanted)(&f.path));
    keep_within(&mut run.files, &mut run.files_truncated, &mut left);
}

/// A test's files within what all tests may still keep.
fn spend(r: &mut TestResult, left: &mut (usize, u64)) {
    if let Some(run) = r.run.as_mut() {
        keep_within(&mut run.files, &mut run.files_truncated, left);
    }
}

fn keep_within(files: &mut Vec<OutputFile>, truncated: &mut bool, left: &mut (usize, u64)) {
    let before = files.len();
    files.retain(|f| {
        let size = match &f.content {
            FileContent::File { bytes, .. } => bytes.len() as u64,
            FileContent::Symlink(t) => t.len() as u64,
        };
        if left.0 == 0 || size > left.1 {
            *truncated = true;
            return false;
        }
        left.0 -= 1;
        left.1 -= size;
        true
    });
    if files.len() < before {
        files.shrink_to_fit();
    }
}

/// The length of `v` as JSON, if it is at most `max` bytes (found without writing more
/// than that).
pub fn encoded_len(v: &serde_json::Value, max: usize) -> Option<usize> {
    /// Counts bytes, failing past `max`.
    struct Counter {
        n: usize,
        max: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.n += buf.len();
            if self.n > self.max {
                return Err(std::io::Error::other("over the maximum"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter { n: 0, max };
    serde_json::to_writer(&mut c, v).ok().map(|()| c.n)
}
