//! Batches (subtasks): tests grouped with points. A batch scores its points times the
//! least fraction any of its tests earned (so all or nothing, unless a checker gives
//! partial points), and nothing when a batch it depends on did not pass in full.

use super::{TestResult, TestVerdict};

/// A batch of tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Its name (unique in a request).
    pub name: String,
    /// What it is worth.
    pub points: f64,
    /// Its tests (indices into the request's).
    pub tests: Vec<usize>,
    /// The batches (indices) that must pass in full before it counts.
    pub depends_on: Vec<usize>,
}

/// What a batch scored.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchResult {
    /// Its name.
    pub name: String,
    /// What it is worth.
    pub points: f64,
    /// What it scored.
    pub score: f64,
    /// `accepted` when every test passed, `skipped` when a batch it depends on did not,
    /// else its first failed test's verdict.
    pub status: &'static str,
    /// Why it scored less than its points.
    pub message: Option<String>,
}

/// The most batches a request may have.
pub const MAX_BATCHES: usize = 100;

/// Checks `batches` against `tests` tests; the batches in an order where each comes
/// after those it depends on (otherwise in the request's order).
pub fn order(batches: &[Batch], tests: usize) -> Result<Vec<usize>, String> {
    if batches.len() > MAX_BATCHES {
        return Err(format!("batches: at most {MAX_BATCHES}, got {}", batches.len()));
    }
    for (i, b) in batches.iter().enumerate() {
        let at = |m: String| Err(format!("batches[{i}] ({:?}): {m}", b.name));
        if b.name.is_empty() || b.name.len() > 100 {
            return at("a name is 1 to 100 bytes".into());
        }
        if batches[..i].iter().any(|o| o.name == b.name) {
            return at("the name is given twice".into());
        }
        if !b.points.is_finite() || b.points < 0.0 {
            return at(format!("points = {}: a finite number, 0 or more", b.points));
        }
        if b.tests.is_empty() {
            return at("no tests".into());
        }
        if let Some(t) = b.tests.iter().find(|&&t| t >= tests) {
            return at(format!("test {t} does not exist (there are {tests})"));
        }
        if let Some(d) = b.depends_on.iter().find(|&&d| d >= batches.len() || d == i) {
            return at(format!("depends on batch {d}, which is not another batch"));
        }
    }
    // Kahn's algorithm, taking the first ready batch each time: the request's order
    // wherever the dependencies allow
    let mut done = vec![false; batches.len()];
    let mut out = Vec::with_capacity(batches.len());
    while out.len() < batches.len() {
        let ready = (0..batches.len()).find(|&b| !done[b] && batches[b].depends_on.iter().all(|&d| done[d]));
        let Some(b) = ready else {
            let stuck: Vec<&str> = (0..batches.len()).filter(|&b| !done[b]).map(|b| batches[b].name.as_str()).collect();
            return Err(format!("batches: the dependencies of {stuck:?} go round in a circle"));
        };
        done[b] = true;
        out.push(b);
    }
    Ok(out)
}

/// Each batch's score, from its tests' results.
pub fn results(batches: &[Batch], tests: &[TestResult]) -> Vec<BatchResult> {
    let order = order(batches, tests.len()).unwrap_or_else(|_| (0..batches.len()).collect());
    let mut out: Vec<Option<BatchResult>> = vec![None; batches.len()];
    for b in order {
        let batch = &batches[b];
        let failed_dep = batch.depends_on.iter().find(|&&d| out[d].as_ref().is_some_and(|r| r.status != "accepted"));
        let result = match failed_dep {
            Some(&d) => BatchResult {
                name: batch.name.clone(),
                points: batch.points,
                score: 0.0,
                status: TestVerdict::Skipped.as_str(),
                message: Some(format!("depends on batch {:?}, which did not pass", batches[d].name)),
            },
            None => scored(batch, tests),
        };
        out[b] = Some(result);
    }
    out.into_iter().flatten().collect()
}

fn scored(batch: &Batch, tests: &[TestResult]) -> BatchResult {
    let fraction = batch.tests.iter().map(|&t| tests[t].fraction()).fold(1.0, f64::min);
    let first_failed = batch.tests.iter().find(|&&t| !tests[t].verdict.passed());
    let (status, message) = match first_failed {
        None => ("accepted", None),
        Some(&t) => {
            let r = &tests[t];
            (r.verdict.as_str(), Some(format!("test {t}: {}", r.message.as_deref().unwrap_or(r.verdict.as_str()))))
        }
    };
    BatchResult { name: batch.name.clone(), points: batch.points, score: batch.points * fraction, status, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(name: &str, points: f64, tests: &[usize], depends_on: &[usize]) -> Batch {
        Batch { name: name.into(), points, tests: tests.to_vec(), depends_on: depends_on.to_vec() }
    }

    fn result(verdict: TestVerdict, points: Option<f64>) -> TestResult {
        let mut r = TestResult::without_run(verdict, None);
        r.points = points;
        r
    }

    #[test]
    fn batches_run_after_what_they_depend_on() {
        let b = [batch("c", 1.0, &[0], &[1, 2]), batch("a", 1.0, &[0], &[]), batch("b", 1.0, &[1], &[1])];
        assert_eq!(order(&b, 2).unwrap(), [1, 2, 0]);
        let circle = [batch("a", 1.0, &[0], &[1]), batch("b", 1.0, &[0], &[0])];
        assert!(order(&circle, 1).unwrap_err().contains("circle"));
        for (bad, needle) in [
            (vec![batch("a", 1.0, &[3], &[])], "does not exist"),
            (vec![batch("a", 1.0, &[0], &[0])], "not another batch"),
            (vec![batch("a", f64::NAN, &[0], &[])], "finite"),
            (vec![batch("a", 1.0, &[], &[])], "no tests"),
            (vec![batch("a", 1.0, &[0], &[]), batch("a", 1.0, &[0], &[])], "twice"),
        ] {
            let e = order(&bad, 2).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn a_batch_scores_its_weakest_test_and_nothing_after_a_failed_dependency() {
        let tests = [
            result(TestVerdict::Accepted, Some(1.0)),
            result(TestVerdict::Partial, Some(0.5)),
            result(TestVerdict::Partial, Some(0.25)),
            result(TestVerdict::WrongAnswer, None),
            result(TestVerdict::Accepted, None),
        ];
        let b = [
            batch("all", 10.0, &[0, 4], &[]),
            batch("partial", 20.0, &[0, 1, 2], &[]),
            batch("wrong", 30.0, &[3], &[0]),
            batch("after", 40.0, &[4], &[2]),
            batch("after partial", 5.0, &[4], &[1]),
        ];
        let r = results(&b, &tests);
        let scores: Vec<f64> = r.iter().map(|r| r.score).collect();
        assert_eq!(scores, [10.0, 5.0, 0.0, 0.0, 0.0]);
        let statuses: Vec<&str> = r.iter().map(|r| r.status).collect();
        assert_eq!(statuses, ["accepted", "partial", "wrong_answer", "skipped", "skipped"]);
        assert!(r[3].message.as_deref().unwrap().contains("\"wrong\""));
    }
}
