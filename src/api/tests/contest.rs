//! Contest rules through the HTTP layer with the fake executor: batches and scores, a
//! checker program, repeated runs, base64 tests, and every 422 they can earn.

use super::*;

fn statuses(v: &Value) -> Vec<&str> {
    v["tests"].as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_score_and_tests_may_be_binary() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let s = Server::start(|_| {}).await;
    let r = s
        .execute(json!({"language": "bash", "code": "p", "tests": [
            {"stdin": b64(&[0xff, 0]), "stdin_encoding": "base64", "expected_output": "p|\u{fffd}\u{0}|bash main.sh"},
            {"stdin": "2", "expected_output": b64(b"p|2|bash main.sh"), "expected_output_encoding": "base64"},
            {"stdin": "3", "expected_output": "wrong"},
            {"stdin": "4", "expected_output": "p|4|bash main.sh"}
        ], "batches": [
            {"name": "first", "points": 30, "tests": [0, 1]},
            {"name": "second", "points": 70, "tests": [2, 3], "depends_on": ["first"]},
            {"name": "third", "points": 5, "tests": [3], "depends_on": [1]}
        ], "number_of_runs": 3, "cpu_extra_time_ms": 100, "time_limit_by": "wall",
           "limits": {"stack_mb": 16}}))
        .await;
    let v = r.json();
    assert_eq!(r.status, StatusCode::OK, "{v}");
    assert_eq!(statuses(&v), ["accepted", "accepted", "wrong_answer", "skipped"]);
    assert_eq!((v["score"].as_f64(), v["max_score"].as_f64()), (Some(30.0), Some(105.0)));
    let batch = |i: usize| (v["batches"][i]["status"].as_str().unwrap(), v["batches"][i]["score"].as_f64().unwrap());
    assert_eq!([batch(0), batch(1), batch(2)], [("accepted", 30.0), ("wrong_answer", 0.0), ("skipped", 0.0)]);
    assert_eq!(v["batches"][1]["max_score"], 70.0);
    assert_eq!(v["tests"][0]["runs"].as_array().unwrap().len(), 3, "{v}");
    let last = s.fake.last.lock().unwrap().clone().unwrap();
    assert_eq!(last.limits.stack_bytes, 16 << 20);
    assert_eq!(last.limits.cpu_time, last.limits.wall_time, "wall time counts: the CPU limit is the wall's");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checker_program_runs_with_the_tests_files() {
    let s = Server::start(|_| {}).await;
    let r = s
        .execute(json!({"language": "bash", "code": "p", "tests": [{"stdin": "1", "expected_output": "x"}],
                        "checker": {"type": "program", "language": "bash", "code": "chk", "limits": {"cpu_time_ms": 700}}}))
        .await;
    let v = r.json();
    assert_eq!(r.status, StatusCode::OK, "{v}");
    assert_eq!(statuses(&v), ["accepted"], "the fake checker exits 0: {v}");
    assert_eq!(v["tests"][0]["points"], 1.0);
    assert_eq!(v["tests"][0]["checker"]["status"], "ok");
    assert_eq!(v["checker"]["status"], "ok");
    assert!(v.get("score").is_none(), "no batches, no score");
    let last = s.fake.last.lock().unwrap().clone().unwrap();
    assert_eq!(
        last.argv,
        ["bash", "main.sh", "/sandbox/.judge/input", "/sandbox/.judge/output", "/sandbox/.judge/answer"]
    );
    let file = |name: &str| last.files.iter().find(|f| f.path == name).map(|f| f.contents.clone());
    assert_eq!(file(".judge/output").unwrap(), b"p|1|bash main.sh");
    assert_eq!(file(".judge/answer").unwrap(), b"x");
    assert_eq!(file(".judge/input").unwrap(), b"1");
    assert_eq!(last.limits.cpu_time, Duration::from_millis(700));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_contest_rules_are_422() {
    let s = Server::start(|_| {}).await;
    let program = |extra: Value| {
        let mut c = json!({"type": "program", "language": "bash", "code": "chk"});
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"language": "bash", "code": "p", "tests": [{}], "checker": c})
    };
    let with = |extra: Value| {
        let mut b = json!({"language": "bash", "code": "p", "tests": [{}, {}]});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    for (body, needle) in [
        (json!({"language": "bash", "code": "p", "batches": []}), "batches needs tests"),
        (with(json!({"number_of_runs": 0})), "number_of_runs = 0"),
        (with(json!({"number_of_runs": 11})), "must be 1 to 10"),
        (with(json!({"cpu_extra_time_ms": 10_001})), "cpu_extra_time_ms"),
        (with(json!({"time_limit_by": "moon"})), "unknown variant"),
        (with(json!({"batches": [{"name": "a", "points": 1, "tests": [2]}]})), "test 2 does not exist"),
        (with(json!({"batches": [{"name": "a", "points": 1, "tests": [0], "depends_on": ["b"]}]})), "no batch"),
        (
            with(json!({"batches": [{"name": "a", "points": 1, "tests": [0], "depends_on": ["b"]},
                                    {"name": "b", "points": 1, "tests": [1], "depends_on": ["a"]}]})),
            "circle",
        ),
        (with(json!({"batches": [{"name": "a", "points": -1, "tests": [0]}]})), "points = -1"),
        (with(json!({"limits": {"stack_mb": 100_000}})), "limits.stack_mb = 100000"),
        (with(json!({"tests": [{"stdin": "!!", "stdin_encoding": "base64"}]})), "tests[0]: stdin: not valid base64"),
        (with(json!({"checker": {"type": "exact", "ignore_case": true}})), "cannot ignore case"),
        (with(json!({"checker": {"type": "tokens", "language": "bash"}})), "a program checker does"),
        (program(json!({"language": "cobol"})), "checker: unsupported language"),
        (
            json!({"language": "bash", "code": "p", "interactor": {"language": "bash", "code": "i"}}),
            "interactor needs tests",
        ),
        (
            with(json!({"interactor": {"language": "bash", "code": "i"}, "checker": "tokens"})),
            "the interactor decides: no checker",
        ),
        (with(json!({"interactor": {"code": "i"}})), "missing field `language`"),
        (
            json!({"language": "python", "code": "p", "function_name": "f", "tests": [{"input": []}],
                   "interactor": {"language": "bash", "code": "i"}}),
            "an interactor talks to a program",
        ),
        (with(json!({"interactor": {"language": "cobol", "code": "i"}})), "interactor: unsupported language"),
        (
            with(json!({"interactor": {"language": "bash", "code": "i", "transcript_bytes": 70_000}})),
            "transcript_bytes = 70000",
        ),
        (
            with(json!({"interactor": {"language": "bash", "code": "i", "limits": {"memory_mb": 0}}})),
            "interactor.limits.memory_mb = 0",
        ),
        (program(json!({"language": "javascript"})), "not available"),
        (program(json!({"absolute": 1.0})), "no tolerance"),
        (program(json!({"limits": {"memory_mb": 0}})), "checker.limits.memory_mb = 0"),
        (program(json!({"code": null})), "checker: no code"),
        (
            json!({"language": "python", "code": "p", "function_name": "f", "tests": [{"input": []}],
                   "checker": {"type": "program", "language": "bash", "code": "chk"}}),
            "function_name returns values",
        ),
    ] {
        let r = s.execute(body.clone()).await;
        expect_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", needle);
    }
    s.shutdown().await;
}

/// A tar.gz of these files, base64.
fn package(files: &[(&str, &str)]) -> String {
    use base64::Engine as _;
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, format!("sum/{name}"), data.as_bytes()).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &b.into_inner().unwrap()).unwrap();
    base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_package_gives_the_tests() {
    let s = Server::start(|_| {}).await;
    let pkg = package(&[
        ("problem.yaml", "name: Echo\nlimits:\n  memory: 100\n"),
        (".timelimit", "1.5"),
        ("data/sample/1.in", "a"),
        ("data/sample/1.ans", "P|A|BASH MAIN.SH"),
        ("data/secret/1.in", "b"),
        ("data/secret/1.ans", "p|b|bash main.sh\n"),
        ("data/secret/2.in", "c"),
        ("data/secret/2.ans", "wrong"),
    ]);
    let r = s.execute(json!({"language": "bash", "code": "p", "package": pkg, "number_of_runs": 2})).await;
    let v = r.json();
    assert_eq!(r.status, StatusCode::OK, "{v}");
    assert_eq!(statuses(&v), ["accepted", "accepted", "wrong_answer"], "the default validator ignores case: {v:#}");
    let names: Vec<&str> = v["tests"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["sample/1", "secret/1", "secret/2"]);
    assert_eq!(v["tests"][0]["runs"].as_array().unwrap().len(), 2);
    let last = s.fake.last.lock().unwrap().clone().unwrap();
    assert_eq!((last.limits.cpu_time, last.limits.memory_bytes), (Duration::from_millis(1500), 100 << 20));
    // the request's own limits come first
    let r = s.execute(json!({"language": "bash", "code": "p", "package": pkg, "limits": {"cpu_time_ms": 700}})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(s.fake.last.lock().unwrap().as_ref().unwrap().limits.cpu_time, Duration::from_millis(700));
    let interactive = package(&[
        ("problem.yaml", "validation: custom interactive\n"),
        ("data/secret/1.in", ""),
        ("data/secret/1.ans", ""),
    ]);
    for (body, needle) in [
        (json!({"language": "bash", "code": "p", "package": "%%%"}), "package: not valid base64"),
        (json!({"language": "bash", "code": "p", "package": "aGVsbG8="}), "package: "),
        (
            json!({"language": "bash", "code": "p", "package": pkg, "tests": [{}]}),
            "the package gives the tests: no tests",
        ),
        (json!({"language": "bash", "code": "p", "package": pkg, "checker": "exact"}), "no checker"),
        (json!({"language": "bash", "code": "p", "package": interactive}), "output_validators/ holds no program"),
        (json!({"language": "bash", "code": "p", "package": package(&[("x", "")])}), "data/secret holds no test"),
    ] {
        let r = s.execute(body.clone()).await;
        expect_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", needle);
    }
    s.shutdown().await;
}
