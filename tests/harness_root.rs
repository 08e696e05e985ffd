//! The function harness with the real toolchains in real sandboxes: for each language,
//! `codeexec::harness::wrap`'s files run with `codeexec run --json -l LANG` and stdin from
//! `harness::input`, the result taken from stdout with `harness::split_output`: two-sum
//! with the user's own output, nested arrays, strings, booleans, doubles (NaN as null), a
//! void function, chars (one-character strings), free functions and methods, an uncaught
//! error and a compile error in the user's file and line, and arguments that do not fit
//! (exit 2). Root only (see `require_privileged!`); the toolchains come from `.ci/run`.

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use codeexec::harness;
use serde_json::{Value, json};

/// One harness run: the result JSON of `codeexec run`, the user's own stdout, the value.
struct Run {
    json: Value,
    stdout: String,
    value: Option<Result<Value, String>>,
}

fn run(lang: &str, function: &str, code: &str, args: &[Value]) -> Run {
    let files = harness::wrap(lang, function, code).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut argv: Vec<String> = ["run", "--json", "--stdin", "-", "--wall-time", "60s"].map(String::from).into();
    for f in &files[1..] {
        let p = dir.path().join(&f.path);
        std::fs::write(&p, &f.contents).unwrap();
        argv.extend(["--file".into(), format!("{}={}", f.path, p.display())]);
    }
    let entry = dir.path().join(&files[0].path);
    std::fs::write(&entry, &files[0].contents).unwrap();
    argv.extend(["-l".into(), lang.into(), entry.display().to_string()]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = common::codeexec(&argv, &harness::input(args));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{lang}: no JSON ({e}); exit {:?}; stderr: {}", out.status, String::from_utf8_lossy(&out.stderr))
    });
    assert_eq!(json["stdout_encoding"], "utf8", "{json:#}");
    let (own, value) = harness::split_output(json["stdout"].as_str().unwrap().as_bytes());
    Run { stdout: String::from_utf8(own).unwrap(), value, json }
}

impl Run {
    /// The run was ok and the function returned `expected`.
    fn returned(&self, expected: &Value) -> &Self {
        assert_eq!(self.json["status"], "ok", "{:#}", self.json);
        assert_eq!(self.value, Some(Ok(expected.clone())), "{:#}", self.json);
        self
    }

    /// The driver refused the test: exit 2, this line on stderr, no result.
    fn refused(&self, message: &str) {
        assert_eq!(self.json["status"], "runtime_error", "{:#}", self.json);
        assert_eq!(self.json["exit_code"], 2, "{:#}", self.json);
        let stderr = self.json["stderr"].as_str().unwrap();
        assert!(stderr.lines().any(|l| l == message), "want {message:?} in stderr: {stderr}");
        assert_eq!(self.value, None);
    }
}

/// The uncaught error has this type and, when given, its innermost frame in `file` is at
/// `line`; the function printed no result.
fn expect_error(r: &Run, kind: &str, place: Option<(&str, u64)>) {
    assert!(matches!(r.json["status"].as_str(), Some("runtime_error" | "signaled")), "{:#}", r.json);
    assert_eq!(r.json["error"]["type"], kind, "{:#}", r.json);
    assert_eq!(r.value, None, "no result after an exception");
    if let Some((file, line)) = place {
        let frames = r.json["error"]["frames"].as_array().unwrap();
        let frame =
            frames.iter().find(|f| f["file"] == file).unwrap_or_else(|| panic!("no frame in {file}: {:#}", r.json));
        assert_eq!(frame["line"].as_u64(), Some(line), "{:#}", r.json);
    }
}

/// The program never ran, or died of a syntax error at once: the first error diagnostic is
/// at `file:line`, or the header of the uncaught `SyntaxError` is.
fn expect_located(r: &Run, file: &str, line: u64) {
    assert_eq!(r.value, None);
    let diagnostics = r.json["diagnostics"].as_array().unwrap();
    match diagnostics.iter().find(|d| d["severity"] == "error") {
        Some(d) => {
            assert!(matches!(r.json["status"].as_str(), Some("syntax_error" | "compile_error")), "{:#}", r.json);
            assert_eq!((d["file"].as_str(), d["line"].as_u64()), (Some(file), Some(line)), "{:#}", r.json);
        }
        None => {
            assert_eq!(r.json["error"]["type"], "SyntaxError", "{:#}", r.json);
            let header = format!("/sandbox/{file}:{line}\n");
            assert!(r.json["stderr"].as_str().unwrap().starts_with(&header), "{:#}", r.json);
        }
    }
}

const TRANSPOSED: fn() -> Value = || json!([[1, 4], [2, 5], [3, 6]]);

fn mean_of(values: &[f64]) -> Value {
    let sum = values.iter().fold(0.0, |a, b| a + b);
    json!([sum / values.len() as f64, null, values[0]])
}

macro_rules! harness {
    ($name:ident, $lang:literal, {
        two_sum: $two_sum:expr,
        transpose: ($tname:literal, $transpose:expr),
        join: $join:expr,
        mean: $mean:expr,
        negate: $negate:expr,
        touch: $touch:expr,
        divide: ($divide:expr, $kind:expr, $place:expr),
        count: $count:expr,
        broken: ($broken:expr, $bfile:literal),
        typed: $typed:expr,
    }) => {
        mod $name {
            use super::*;

            #[test]
            fn two_sum_and_the_users_own_output() {
                require_privileged!();
                let r = run($lang, "twoSum", $two_sum, &[json!([2, 7, 11, 15]), json!(9)]);
                r.returned(&json!([0, 1]));
                assert_eq!(r.stdout, "debug", "the user's output, without the driver's newline");
                let r = run($lang, "twoSum", $two_sum, &[json!([3, 2, 4]), json!(6)]);
                r.returned(&json!([1, 2]));
            }

            #[test]
            fn nested_arrays() {
                require_privileged!();
                let r = run($lang, $tname, $transpose, &[json!([[1, 2, 3], [4, 5, 6]])]);
                r.returned(&TRANSPOSED());
                assert_eq!(r.stdout, "");
            }

            #[test]
            fn strings_and_booleans() {
                require_privileged!();
                let r = run($lang, "join", $join, &[json!(["ab", "cd"]), json!("+\u{e9}\"\n\u{1}+"), json!(true)]);
                r.returned(&json!("AB+\u{e9}\"\n\u{1}+CD"));
                let r = run($lang, "negate", $negate, &[json!([true, false, false])]);
                r.returned(&json!([false, true, true]));
            }

            #[test]
            fn doubles_read_back_exactly() {
                require_privileged!();
                let values = [0.1, 2.0, 4.2, 1e-7];
                let r = run($lang, "mean", $mean, &[json!(values)]);
                r.returned(&mean_of(&values));
            }

            #[test]
            fn a_void_function_returns_null() {
                require_privileged!();
                let r = run($lang, "touch", $touch, &[json!(5)]);
                r.returned(&Value::Null);
                assert_eq!(r.stdout, "5\n");
            }

            #[test]
            fn an_exception_is_the_users_own() {
                require_privileged!();
                let r = run($lang, "divide", $divide, &[json!(1), json!(0)]);
                expect_error(&r, $kind, $place);
                let r = run($lang, "divide", $divide, &[json!(6), json!(3)]);
                r.returned(&json!(2));
            }

            #[test]
            fn chars_are_one_character_strings() {
                require_privileged!();
                let code: &str = $count;
                let grid = json!([["1", "1", "0"], ["0", "1", "x"]]);
                let r = run($lang, "count", code, &[grid, json!("1")]);
                r.returned(&json!(["1", 3]));
            }

            #[test]
            fn a_compile_error_is_on_the_users_line() {
                require_privileged!();
                let r = run($lang, "f", $broken, &[json!(1)]);
                expect_located(&r, $bfile, 2);
            }

            #[test]
            fn arguments_that_do_not_fit_are_refused() {
                require_privileged!();
                let r = run($lang, "twoSum", $two_sum, &[json!([2, 7])]);
                r.refused("codeexec: twoSum takes 2 arguments, the test gives 1");
                if $typed {
                    let r = run($lang, "twoSum", $two_sum, &[json!([2, "x", 11]), json!(9)]);
                    r.refused("codeexec: argument 1 of 2 of twoSum: expected int at [1], got a string");
                    let r = run($lang, "twoSum", $two_sum, &[json!([2, 7]), json!(9.5)]);
                    r.refused("codeexec: argument 2 of 2 of twoSum: expected int, got the number 9.5");
                }
            }
        }
    };
}

harness!(python, "python", {
    two_sum: "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        print('debug', end='')\n        seen = {}\n        for i, x in enumerate(nums):\n            if target - x in seen:\n                return [seen[target - x], i]\n            seen[x] = i\n",
    transpose: ("transpose", "def transpose(m):\n    return [list(r) for r in zip(*m)]\n"),
    join: "def join(words, sep, upper):\n    return sep.join(w.upper() if upper else w for w in words)\n",
    mean: "import math\n\ndef mean(values):\n    return [sum(values) / len(values), math.nan, values[0]]\n",
    negate: "class Solution:\n    def negate(self, flags):\n        return [not f for f in flags]\n",
    touch: "def touch(x):\n    print(x)\n",
    divide: ("def divide(a, b):\n    return a // b\n", "ZeroDivisionError", Some(("solution.py", 2))),
    count: "def count(grid, c):\n    return [c, sum(row.count(c) for row in grid)]\n",
    broken: ("def f(x):\n    return (x\n", "solution.py"),
    typed: false,
});

harness!(javascript, "javascript", {
    two_sum: "class Solution {\n  twoSum(nums, target) {\n    process.stdout.write('debug');\n    const seen = new Map();\n    for (let i = 0; i < nums.length; i++) {\n      if (seen.has(target - nums[i])) return [seen.get(target - nums[i]), i];\n      seen.set(nums[i], i);\n    }\n  }\n}\n",
    transpose: ("transpose", "const transpose = (m) => m[0].map((_, j) => m.map((r) => r[j]));\n"),
    join: "function join(words, sep, upper) {\n  return words.map((w) => (upper ? w.toUpperCase() : w)).join(sep);\n}\n",
    mean: "var mean = function (values) {\n  return [values.reduce((a, b) => a + b, 0) / values.length, NaN, values[0]];\n};\n",
    negate: "let negate = (flags) => flags.map((f) => !f);\n",
    touch: "function touch(x) {\n  console.log(x);\n}\n",
    divide: ("function divide(a, b) {\n  if (b === 0) throw new RangeError('division by zero');\n  return a / b;\n}\n", "RangeError", Some(("solution.js", 2))),
    count: "const count = (grid, c) => [c, grid.flat().filter((x) => x === c).length];\n",
    broken: ("function f(x) {\n  return x +;\n}\n", "solution.js"),
    typed: false,
});

harness!(java, "java", {
    two_sum: "class Solution {\n    public int[] twoSum(int[] nums, int target) {\n        System.out.print(\"debug\");\n        Map<Integer, Integer> seen = new HashMap<>();\n        for (int i = 0; i < nums.length; i++) {\n            if (seen.containsKey(target - nums[i])) return new int[] {seen.get(target - nums[i]), i};\n            seen.put(nums[i], i);\n        }\n        return null;\n    }\n}\n",
    transpose: ("transpose", "class Matrix {\n    static List<List<Integer>> transpose(List<List<Integer>> m) {\n        List<List<Integer>> out = new ArrayList<>();\n        for (int j = 0; j < m.get(0).size(); j++) {\n            List<Integer> row = new ArrayList<>();\n            for (List<Integer> r : m) row.add(r.get(j));\n            out.add(row);\n        }\n        return out;\n    }\n}\n"),
    join: "public class Solution {\n    public static String join(String[] words, String sep, boolean upper) {\n        return Arrays.stream(words).map(w -> upper ? w.toUpperCase() : w).collect(Collectors.joining(sep));\n    }\n}\n",
    mean: "class Solution {\n    double[] mean(List<Double> values) {\n        double sum = 0;\n        for (double v : values) sum += v;\n        return new double[] {sum / values.size(), Double.NaN, values.get(0)};\n    }\n}\n",
    negate: "class Solution {\n    boolean[] negate(boolean[] flags) {\n        boolean[] out = new boolean[flags.length];\n        for (int i = 0; i < flags.length; i++) out[i] = !flags[i];\n        return out;\n    }\n}\n",
    touch: "class Solution {\n    void touch(int x) {\n        System.out.println(x);\n    }\n}\n",
    divide: ("class Solution {\n    int divide(int a, int b) {\n        return a / b;\n    }\n}\n", "java.lang.ArithmeticException", Some(("Solution.java", 3))),
    count: "class Solution {\n    Object[] count(char[][] grid, char c) {\n        int n = 0;\n        for (char[] row : grid) for (char x : row) if (x == c) n++;\n        return new Object[] {c, n};\n    }\n}\n",
    broken: ("class Solution {\n    int f(int x) { return x + \"a\"; }\n}\n", "Solution.java"),
    typed: true,
});

harness!(cpp, "cpp", {
    two_sum: "class Solution {\npublic:\n    vector<int> twoSum(vector<int>& nums, int target) {\n        cout << \"debug\";\n        unordered_map<int, int> seen;\n        for (int i = 0; i < (int)nums.size(); i++) {\n            if (seen.count(target - nums[i])) return {seen[target - nums[i]], i};\n            seen[nums[i]] = i;\n        }\n        return {};\n    }\n};\n",
    transpose: ("transpose", "vector<vector<int>> transpose(const vector<vector<int>>& m) {\n    vector<vector<int>> out(m[0].size());\n    for (auto& r : m)\n        for (size_t j = 0; j < r.size(); j++) out[j].push_back(r[j]);\n    return out;\n}\n"),
    join: "string join(vector<string> words, string sep, bool upper) {\n    string out;\n    for (size_t i = 0; i < words.size(); i++) {\n        if (i) out += sep;\n        for (char c : words[i]) out += upper ? (char)toupper(c) : c;\n    }\n    return out;\n}\n",
    mean: "struct Solution {\n    vector<double> mean(vector<double> values) {\n        double sum = 0;\n        for (double v : values) sum += v;\n        return {sum / values.size(), NAN, values[0]};\n    }\n};\n",
    negate: "vector<bool> negate(vector<bool> flags) {\n    for (size_t i = 0; i < flags.size(); i++) flags[i] = !flags[i];\n    return flags;\n}\n",
    touch: "class Solution {\npublic:\n    void touch(int x) { cout << x << endl; }\n};\n",
    divide: ("int divide(int a, int b) {\n    if (b == 0) throw std::domain_error(\"division by zero\");\n    return a / b;\n}\n", "std::domain_error", None),
    count: "pair<char, int> count(vector<vector<char>>& grid, char c) {\n    int n = 0;\n    for (auto& row : grid)\n        for (char x : row) n += x == c;\n    return {c, n};\n}\n",
    broken: ("int f(int x) {\n    return x + y;\n}\n", "solution.h"),
    typed: true,
});

harness!(go, "go", {
    two_sum: "import \"fmt\"\n\nfunc twoSum(nums []int, target int) []int {\n\tfmt.Print(\"debug\")\n\tseen := map[int]int{}\n\tfor i, x := range nums {\n\t\tif j, ok := seen[target-x]; ok {\n\t\t\treturn []int{j, i}\n\t\t}\n\t\tseen[x] = i\n\t}\n\treturn nil\n}\n",
    transpose: ("transpose", "package main\n\nfunc transpose(m [][]int) [][]int {\n\tout := make([][]int, len(m[0]))\n\tfor _, r := range m {\n\t\tfor j, x := range r {\n\t\t\tout[j] = append(out[j], x)\n\t\t}\n\t}\n\treturn out\n}\n"),
    join: "import \"strings\"\n\nfunc join(words []string, sep string, upper bool) string {\n\tif upper {\n\t\tfor i := range words {\n\t\t\twords[i] = strings.ToUpper(words[i])\n\t\t}\n\t}\n\treturn strings.Join(words, sep)\n}\n",
    mean: "import \"math\"\n\ntype Solution struct{}\n\nfunc (s *Solution) mean(values []float64) []float64 {\n\tsum := 0.0\n\tfor _, v := range values {\n\t\tsum += v\n\t}\n\treturn []float64{sum / float64(len(values)), math.NaN(), values[0]}\n}\n",
    negate: "func negate(flags []bool) []bool {\n\tout := make([]bool, len(flags))\n\tfor i, f := range flags {\n\t\tout[i] = !f\n\t}\n\treturn out\n}\n",
    touch: "import \"fmt\"\n\nfunc touch(x int) {\n\tfmt.Println(x)\n}\n",
    divide: ("func divide(a, b int) int {\n\treturn a / b\n}\n", "panic", Some(("solution.go", 2))),
    count: "type Solution struct{}\n\nfunc (Solution) count(grid [][]byte, c byte) []any {\n\tn := 0\n\tfor _, row := range grid {\n\t\tfor _, x := range row {\n\t\t\tif x == c {\n\t\t\t\tn++\n\t\t\t}\n\t\t}\n\t}\n\treturn []any{c, n}\n}\n",
    broken: ("func f(x int) int {\n\treturn x + \"a\"\n}\n", "solution.go"),
    typed: true,
});
