//! Packages read from files in memory, and the judge requests they become.

use super::*;

fn files(entries: &[(&str, &str)]) -> Files {
    entries.iter().map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())).collect()
}

fn languages() -> Vec<Language> {
    crate::lang::load(None).unwrap()
}

fn judging(langs: &[Language]) -> Judging<'_> {
    let language_of = move |ext: &str| by_extension(langs, ext).map(|l| (l.clone(), None));
    Judging {
        language_of: Box::leak(Box::new(language_of)),
        limits: Limits::default(),
        validator_limits: Limits::default(),
    }
}

const SUM: &[(&str, &str)] = &[
    ("problem.yaml", "name: Sum\nvalidator_flags: float_tolerance 1e-3\nlimits:\n  memory: 512\n"),
    (".timelimit", "2\n"),
    ("data/sample/1.in", "1 2\n"),
    ("data/sample/1.ans", "3\n"),
    ("data/secret/b.in", "2 2\n"),
    ("data/secret/b.ans", "4\n"),
    ("data/secret/a.in", "5 5\n"),
    ("data/secret/a.ans", "10\n"),
    ("input_validators/check/check.py", "import sys\nsys.exit(42)\n"),
    ("data/testdata.yaml", "input_validator_flags: max 100\n"),
];

#[test]
fn a_package_reads_into_tests_limits_and_validators() {
    let p = load(&files(SUM), "dir").unwrap();
    assert_eq!(p.name, "Sum");
    let names: Vec<&str> = p.tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["sample/1", "secret/a", "secret/b"], "samples first, then by name");
    assert_eq!(p.tests[1].answer, b"10\n");
    assert_eq!((p.time_limit, p.memory_mb), (Some(Duration::from_secs(2)), Some(512)));
    assert!(p.output_validator.is_none(), "validation is default");
    assert_eq!(p.input_validators[0].name, "check");
    assert_eq!(p.input_flags, ["max", "100"]);
    let langs = languages();
    let r = p.request(Source::Code("x".into()), &judging(&langs)).unwrap();
    assert_eq!(r.checker, Checker::Float { absolute: 1e-3, relative: 1e-3 });
    assert!(r.rules.ignore_case && r.rules.program.is_none());
    let v = &r.rules.input_validators[0];
    assert_eq!(
        (v.lang.id.as_str(), v.protocol, v.args.clone()),
        ("python", Protocol::KattisInput, p.input_flags.clone())
    );
}

#[test]
fn a_custom_validator_and_scoring_groups() {
    let mut f = files(&[
        ("problem.yaml", "type: scoring\nvalidation: custom\nvalidator_flags: strict\n"),
        ("output_validators/v/v.cpp", "int main(){return 42;}"),
        ("output_validators/v/util.h", ""),
        ("data/secret/g1/1.in", ""),
        ("data/secret/g1/1.ans", ""),
        ("data/secret/g1/testdata.yaml", "accept_score: 30\n"),
        ("data/secret/g2/1.in", ""),
        ("data/secret/g2/1.ans", ""),
        ("data/secret/g2/2.in", ""),
        ("data/secret/g2/2.ans", ""),
    ]);
    let p = load(&f, "dir").unwrap();
    assert_eq!(p.groups, [("g1".to_owned(), 30.0, vec![0]), ("g2".to_owned(), 1.0, vec![1, 2])]);
    let langs = languages();
    let r = p.request(Source::Code("x".into()), &judging(&langs)).unwrap();
    let v = r.rules.program.as_ref().unwrap();
    assert_eq!((v.lang.id.as_str(), v.protocol, v.args.clone()), ("cpp", Protocol::Kattis, vec!["strict".to_owned()]));
    let Source::Files(vf) = &v.source else { panic!() };
    assert_eq!(vf.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["v.cpp", "util.h"]);
    assert_eq!(r.rules.batches.len(), 2);
    // interactive: the validator is the interactor, no checker
    f.insert("problem.yaml".into(), b"validation: custom interactive\nvalidator_flags: strict\n".to_vec());
    let p = load(&f, "dir").unwrap();
    assert!(p.interactive);
    let r = p.request(Source::Code("x".into()), &judging(&langs)).unwrap();
    assert!(r.rules.program.is_none());
    let v = r.rules.interactor.as_ref().unwrap();
    assert_eq!((v.protocol, v.args.clone()), (Protocol::Kattis, vec!["strict".to_owned()]));
    f.insert("problem.yaml".into(), b"validation: default interactive\n".to_vec());
    assert!(load(&f, "dir").unwrap_err().to_string().contains("custom interactive"));
    f.insert("problem.yaml".into(), b"validation: custom\n".to_vec());
    f.retain(|k, _| !k.starts_with("output_validators"));
    assert!(load(&f, "dir").unwrap_err().to_string().contains("output_validators/ holds no program"));
}

#[test]
fn broken_packages_say_why() {
    let e = load(&files(&[("data/secret/1.in", "")]), "d").unwrap_err();
    assert!(e.to_string().contains("has no data/secret/1.ans"), "{e}");
    let e = load(&files(&[("data/sample/1.in", ""), ("data/sample/1.ans", "")]), "d").unwrap_err();
    assert!(e.to_string().contains("data/secret holds no test"), "{e}");
    let e = load(&files(&[("problem.yaml", "name: [")]), "d").unwrap_err();
    assert!(e.to_string().starts_with("problem.yaml: "), "{e}");
}
