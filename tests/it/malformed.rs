//! Malformed pipeline files: each gives exit code 2, a message naming the file,
//! line and what was expected, and leaves the workspace exactly as it was.

use std::time::{Duration, Instant};

use crate::harness::Workspace;

/// (pipeline text, line the error must point at, text the message must contain)
const CASES: &[(&str, usize, &str)] = &[
    // 1: TOML syntax error
    ("[pipeline]\nname = \"x\"\n[stages.a\nkind = \"command\"\n", 3, "invalid TOML"),
    // 2: unterminated string
    ("[pipeline]\nname = \"x\n", 2, "invalid TOML"),
    // 3: duplicate stage name
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n", 6, "invalid TOML"),
    // 4: missing [pipeline]
    ("[stages.a]\nkind = \"command\"\ncmd = \"true\"\n", 1, "missing `[pipeline]`"),
    // 5: pipeline without a name
    ("[pipeline]\nseed = 1\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n", 1, "needs a `name`"),
    // 6: unknown key in [pipeline]
    ("[pipeline]\nname = \"x\"\nsed = 1\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n", 3, "unknown key `sed`"),
    // 7: seed of the wrong type
    ("[pipeline]\nname = \"x\"\nseed = \"one\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n", 3, "non-negative integer"),
    // 8: unknown top-level key
    ("[pipeline]\nname = \"x\"\n[stage.a]\nkind = \"command\"\n", 3, "unknown top-level key `stage`"),
    // 9: no stages
    ("[pipeline]\nname = \"x\"\n", 3, "no stages"),
    // 10: stage without kind
    ("[pipeline]\nname = \"x\"\n[stages.a]\ncmd = \"true\"\n", 3, "missing `kind`"),
    // 11: unknown kind
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"comand\"\ncmd = \"true\"\n", 4, "unknown kind `comand`"),
    // 12: input that is not a stage
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\ninputs = [\"nope\"]\n", 6, "input `nope` is not a stage"),
    // 13: inputs of the wrong type
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\ninputs = \"b\"\n", 6, "list of stage names"),
    // 14: a cycle of two stages
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\ninputs = [\"b\"]\n[stages.b]\nkind = \"command\"\ncmd = \"true\"\ninputs = [\"a\"]\n", 10, "cycle: a -> b -> a"),
    // 15: a stage reading itself
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\ninputs = [\"a\"]\n", 6, "cycle: a -> a"),
    // 16: an empty sweep list
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n[stages.a.sweep]\nn = []\n", 7, "empty"),
    // 17: a sweep that is not a table
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\nsweep = [1, 2]\n", 6, "must be a table"),
    // 18: sweep values that are not a list
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n[stages.a.sweep]\nn = 3\n", 7, "must be a list"),
    // 19: zip over lists of different lengths
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\nsweep_mode = \"zip\"\n[stages.a.sweep]\nn = [1, 2]\nm = [1, 2, 3]\n", 9, "equal length"),
    // 20: unknown sweep mode
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\nsweep_mode = \"cross\"\n", 6, "\"grid\" or \"zip\""),
    // 21: a parameter both set and swept
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\nn = 1\n[stages.a.sweep]\nn = [1, 2]\n", 8, "set in the stage and swept"),
    // 22: command without cmd
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\nfoo = 1\n", 3, "missing parameter `cmd`"),
    // 23: command parameter of the wrong type
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = 42\n", 5, "parameter `cmd`"),
    // 24: deps file that does not exist
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\ndeps = [\"missing.csv\"]\n", 6, "cannot read `missing.csv`"),
    // 25: foreach naming a stage that is not an input
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n[stages.b]\nkind = \"command\"\ncmd = \"true\"\nforeach = [\"a\"]\n", 9, "not in `inputs`"),
    // 26: a stage that is not a table
    ("[pipeline]\nname = \"x\"\n[stages]\na = 3\n", 4, "must be a table"),
    // 27: a pipeline name that cannot name a directory
    ("[pipeline]\nname = \"a/b\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n", 2, "pipeline name"),
    // 28: threads of the wrong value
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\nthreads = 0\n", 6, "integer >= 1"),
    // 29: a duplicated sweep value
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\nsweep = { n = [1, 1] }\n", 6, "twice"),
    // 30: foreach over a key its input is not swept over (located at the entry)
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\nsweep = { n = [1, 2] }\n[stages.b]\nkind = \"command\"\ncmd = \"true\"\ninputs = [\"a\"]\nforeach = [\"a.m\"]\n", 11, "maps over `m` of `a`"),
    // 31: foreach over a whole input and one of its keys
    ("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\nsweep = { n = [1, 2] }\n[stages.b]\nkind = \"command\"\ncmd = \"true\"\ninputs = [\"a\"]\nforeach = [\"a\", \"a.n\"]\n", 11, "names `a` twice"),
];

#[test]
fn malformed_pipelines_exit_2_with_the_line_and_change_nothing() {
    let ws = Workspace::new();
    // A workspace with a finished run, so "changes nothing" covers the store too.
    ws.write(
        "good.toml",
        "[pipeline]\nname = \"good\"\n[stages.a]\nkind = \"command\"\ncmd = \"echo hi > a.txt\"\n",
    );
    ws.run(&["run", "good.toml"]).success();
    let mut failures = Vec::new();
    for (n, (text, line, expected)) in CASES.iter().enumerate() {
        ws.write("bad.toml", text);
        let before = ws.snapshot();
        for command in ["run", "plan"] {
            let out = ws.run(&[command, "bad.toml"]);
            let location = format!("bad.toml:{line}:");
            let ok = out.code == 2
                && out.stderr.contains(&location)
                && out.stderr.contains(expected)
                && out.stdout.is_empty();
            if !ok {
                failures.push(format!(
                    "case {} ({command}): expected exit 2 with `{location}` and `{expected}`, got exit {}:\n{}",
                    n + 1,
                    out.code,
                    out.stderr
                ));
            }
        }
        assert_eq!(
            before,
            ws.snapshot(),
            "case {} changed the workspace",
            n + 1
        );
    }
    assert!(CASES.len() >= 20);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn errors_render_the_source_line_with_a_caret() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        "[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"comand\"\ncmd = \"true\"\n",
    );
    let out = ws.run(&["run", "p.toml"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("error: stage `a`: unknown kind `comand`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("4 | kind = \"comand\""),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("^^^^^^^^"), "{}", out.stderr);
}

#[test]
fn a_missing_pipeline_file_and_bad_flags_exit_2() {
    let ws = Workspace::new();
    let out = ws.run(&["run", "nope.toml"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("nope.toml"), "{}", out.stderr);
    assert!(out.stderr.contains("cannot read pipeline file"));
    let out = ws.run(&["run", "nope.toml", "--jobs", "zero"]);
    assert_eq!(out.code, 2);
    assert!(!ws.join(".scalepipe").exists());
}

/// A valid pipeline with one command stage `a` whose table ends the file, so a
/// line appended lands in it.
fn with_stage_line(line: &str) -> String {
    format!("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n{line}\n")
}

/// Values of every TOML type but the one named.
fn wrong(except: &str) -> Vec<&'static str> {
    [
        ("string", "\"text\""),
        ("integer", "7"),
        ("negative", "-3"),
        ("float", "1.5"),
        ("bool", "true"),
        ("array", "[1, 2]"),
        ("table", "{ k = 1 }"),
        ("datetime", "1979-05-27T07:32:00Z"),
    ]
    .into_iter()
    .filter(|(kind, _)| !except.split(',').any(|e| e == *kind))
    .map(|(_, v)| v)
    .collect()
}

/// The generated corpus: (file bytes, expected exit code, message fragment).
fn generated_cases() -> Vec<(Vec<u8>, i32, String)> {
    let mut cases: Vec<(String, &str)> = Vec::new();
    let head = |key: &str, v: &str| {
        format!("[pipeline]\nname = \"x\"\n{key} = {v}\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n")
    };
    for v in wrong("string") {
        cases.push((
            format!("[pipeline]\nname = {v}\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n"),
            "`name` must be a string",
        ));
        cases.push((head("description", v), "`description` must be a string"));
        cases.push((
            format!("[pipeline]\nname = \"x\"\n[stages.a]\nkind = {v}\ncmd = \"true\"\n"),
            "`kind` must be a string",
        ));
        cases.push((
            with_stage_line(&format!("sweep_mode = {v}")),
            "\"grid\" or \"zip\"",
        ));
        cases.push((
            format!("[pipeline]\nname = \"x\"\nstages = {v}\n"),
            "unknown key `stages`",
        ));
    }
    // An inline table is a table, and a TOML datetime reads as its text.
    for v in wrong("string,table") {
        cases.push((
            format!("pipeline = {v}\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n"),
            "`pipeline` must be a table",
        ));
        cases.push((
            format!("[pipeline]\nname = \"x\"\n[stages]\na = {v}\n"),
            "must be a table",
        ));
    }
    for v in wrong("string,datetime") {
        cases.push((
            format!("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = {v}\n"),
            "parameter `cmd`",
        ));
    }
    for v in wrong("integer") {
        cases.push((head("seed", v), "non-negative integer"));
        cases.push((with_stage_line(&format!("threads = {v}")), "integer >= 1"));
    }
    for v in wrong("array") {
        cases.push((
            with_stage_line(&format!("inputs = {v}")),
            "list of stage names",
        ));
        cases.push((
            with_stage_line(&format!("foreach = {v}")),
            "list of stage names",
        ));
        cases.push((
            with_stage_line(&format!("[stages.a.sweep]\nn = {v}")),
            "must be a list",
        ));
    }
    for v in ["\"Grid\"", "\"\"", "\"zipped\"", "\"GRID\""] {
        cases.push((
            with_stage_line(&format!("sweep_mode = {v}")),
            "\"grid\" or \"zip\"",
        ));
    }
    for v in [
        "0",
        "-1",
        "0.0",
        "-2.5",
        "\"abc\"",
        "\"5 parsecs\"",
        "\"\"",
        "\"-3s\"",
        "true",
        "[1]",
        "{ s = 1 }",
        "nan",
        "inf",
        "1e300",
        "\"1e300h\"",
        "\"3 fortnights\"",
        "\"s\"",
        "1979-05-27",
    ] {
        cases.push((
            with_stage_line(&format!("timeout = {v}")),
            "`timeout` must be a duration",
        ));
    }
    for v in ["0", "-1", "-100"] {
        cases.push((with_stage_line(&format!("threads = {v}")), "integer >= 1"));
    }
    for v in ["\"\"", "\"   \"", "\"\\n\""] {
        cases.push((
            format!("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = {v}\n"),
            "parameter `cmd`",
        ));
    }
    for v in ["[1]", "{ a = 1 }", "[[1]]", "[\"a\"]"] {
        cases.push((
            with_stage_line(&format!("extra = {v}")),
            "substituted into `cmd`",
        ));
    }
    for key in [
        "sed", "nam", "Name", "seeds", "desc", "version", "kind", "inputs",
    ] {
        cases.push((head(key, "1"), "unknown key"));
    }
    for key in ["stage", "pipelines", "Stages", "config", "x", "Pipeline"] {
        cases.push((format!("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n[{key}]\nk = 1\n"), "unknown top-level key"));
    }
    for kind in [
        "comand",
        "Command",
        "train2",
        "dataset",
        "dataset.foo",
        "",
        "fit ",
        "eval\\t",
        "report.html",
    ] {
        cases.push((
            format!("[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"{kind}\"\ncmd = \"true\"\n"),
            "unknown kind",
        ));
    }
    for name in [
        "\"a b\"",
        "\"é\"",
        "\"a/b\"",
        "\"\"",
        "\"a.b\"",
        "\"../up\"",
        "\"a\\tb\"",
    ] {
        cases.push((
            format!(
                "[pipeline]\nname = \"x\"\n[stages.{name}]\nkind = \"command\"\ncmd = \"true\"\n"
            ),
            "stage names must be",
        ));
    }
    for name in ["a/b", "a b", "..", "é", "a.b", "x\\ny", "/abs"] {
        cases.push((
            format!(
                "[pipeline]\nname = \"{name}\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n"
            ),
            "pipeline name",
        ));
    }
    for missing in ["nope", "A", "a ", "b", "stages"] {
        cases.push((
            with_stage_line(&format!("inputs = [\"{missing}\"]")),
            "is not a stage",
        ));
    }
    for list in ["[\"z\", \"z\"]", "[\"z\", \"y\", \"z\"]"] {
        let text = format!("[pipeline]\nname = \"x\"\n[stages.z]\nkind = \"command\"\ncmd = \"true\"\n[stages.y]\nkind = \"command\"\ncmd = \"true\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\ninputs = {list}\n");
        cases.push((text, "listed twice"));
    }
    for len in 1..=8 {
        let mut text = String::from("[pipeline]\nname = \"x\"\n");
        for i in 0..len {
            text.push_str(&format!(
                "[stages.s{i}]\nkind = \"command\"\ncmd = \"true\"\ninputs = [\"s{}\"]\n",
                (i + 1) % len
            ));
        }
        cases.push((text, "cycle"));
    }
    for key in ["n", "width", "lr"] {
        cases.push((
            with_stage_line(&format!("[stages.a.sweep]\n{key} = []")),
            "empty",
        ));
        cases.push((
            with_stage_line(&format!("{key} = 1\n[stages.a.sweep]\n{key} = [1, 2]")),
            "set in the stage and swept",
        ));
    }
    for values in ["[[1], [2]]", "[{ a = 1 }]", "[1, [2]]"] {
        cases.push((
            with_stage_line(&format!("[stages.a.sweep]\nn = {values}")),
            "strings, numbers or booleans",
        ));
    }
    for values in [
        "[1, 1]",
        "[\"a\", \"a\"]",
        "[true, true]",
        "[1.5, 2, 1.5]",
        "[1, 2, 3, 2]",
    ] {
        cases.push((
            with_stage_line(&format!("[stages.a.sweep]\nn = {values}")),
            "twice",
        ));
    }
    for key in [
        "kind",
        "inputs",
        "foreach",
        "sweep_mode",
        "timeout",
        "sweep",
    ] {
        cases.push((
            with_stage_line(&format!("[stages.a.sweep]\n{key} = [1, 2]")),
            "cannot be swept",
        ));
    }
    for (a, b) in [(2, 3), (1, 2), (3, 1), (4, 5)] {
        let list = |n: usize| {
            format!(
                "[{}]",
                (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
            )
        };
        cases.push((
            with_stage_line(&format!(
                "sweep_mode = \"zip\"\n[stages.a.sweep]\nn = {}\nm = {}",
                list(a),
                list(b)
            )),
            "equal length",
        ));
    }
    for dup in ["name = \"y\"", "seed = 2"] {
        cases.push((format!("[pipeline]\nname = \"x\"\nseed = 1\n{dup}\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n"), "invalid TOML"));
    }
    for dup in [
        "kind = \"command\"",
        "cmd = \"false\"",
        "[stages.a]",
        "[stages.a.sweep]\nn = [1]\n[stages.a.sweep]",
    ] {
        cases.push((with_stage_line(dup), "invalid TOML"));
    }
    cases.push(("[pipeline]\nname = \"x\"\n[pipeline]\nname = \"y\"\n[stages.a]\nkind = \"command\"\ncmd = \"true\"\n".to_string(), "invalid TOML"));
    for broken in [
        "[stages.a",
        "cmd = ",
        "= 1",
        "x = \"open",
        "y = [1, 2",
        "z = { a = 1",
        "w = 1 2",
        "[]",
        "v = 0x",
        "u = 1__0",
    ] {
        cases.push((with_stage_line(broken), "invalid TOML"));
    }
    // Huge values: out of range integers, giant timeouts, long names.
    for v in ["99999999999999999999", "-99999999999999999999", "1e400"] {
        cases.push((head("seed", v), "invalid TOML"));
    }
    cases.push((
        with_stage_line("timeout = 1e12"),
        "`timeout` must be a duration",
    ));
    cases.push((
        with_stage_line(&format!("inputs = [\"{}\"]", "q".repeat(10_000))),
        "is not a stage",
    ));
    cases.push((
        with_stage_line(&format!(
            "[stages.a.sweep]\nn = [{}]",
            vec!["1"; 5000].join(", ")
        )),
        "twice",
    ));
    cases.push((
        format!(
            "[pipeline]\nname = \"x\"\n[stages.a]\nkind = \"{}\"\n",
            "k".repeat(100_000)
        ),
        "unknown kind",
    ));

    let mut out: Vec<(Vec<u8>, i32, String)> = cases
        .into_iter()
        .map(|(text, fragment)| (text.into_bytes(), 2, fragment.to_string()))
        .collect();
    // Bytes that are not UTF-8, in every part of a valid file.
    let valid = with_stage_line("n = 1").into_bytes();
    for (i, bad) in [0xffu8, 0xfe, 0xc3, 0x80, 0xe2].into_iter().enumerate() {
        for at in [0, valid.len() / 3, valid.len() / 2, valid.len() - 1] {
            let mut bytes = valid.clone();
            bytes.insert(at + i % 2, bad);
            out.push((bytes, 2, "not valid UTF-8".into()));
        }
    }
    out
}

#[test]
fn the_generated_corpus_of_malformed_pipelines_exits_with_located_errors() {
    let ws = Workspace::new();
    let cases = generated_cases();
    assert!(cases.len() >= 200, "only {} generated cases", cases.len());
    let mut failures = Vec::new();
    for (n, (bytes, code, fragment)) in cases.iter().enumerate() {
        std::fs::write(ws.join("bad.toml"), bytes).unwrap();
        let out = ws.run(&["plan", "bad.toml"]);
        let located = out.stderr.contains("bad.toml:");
        if out.code != *code || !out.stderr.contains(fragment.as_str()) || !located {
            failures.push(format!(
                "generated case {n}: expected exit {code} with `bad.toml:` and `{fragment}`, got exit {}:\n{}\n--- file:\n{}",
                out.code,
                out.stderr,
                String::from_utf8_lossy(bytes)
            ));
        }
    }
    assert!(!ws.join(".scalepipe").exists(), "plan wrote to the store");
    eprintln!("{} generated malformed pipelines checked", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// Fuzzing parse + validate + expand: seeded mutations of valid pipelines must
/// give a pipeline or an error with a line, never a panic. Bounded in count and time.
#[test]
fn seeded_mutations_of_valid_pipelines_never_panic() {
    use rand::{Rng, SeedableRng};
    use scalepipe::graph::Plan;
    use scalepipe::pipeline::{Pipeline, Source};

    let seeds = [
        "[pipeline]\nname = \"f\"\nseed = 3\n[stages.data]\nkind = \"dataset.teacher\"\nn = 100\ninputs_dim = 4\n[stages.train]\nkind = \"train\"\ninputs = [\"data\"]\nmodel = \"mlp\"\nsteps = 2\nsweep = { width = [4, 8], depth = [1, 2] }\n[stages.eval]\nkind = \"eval\"\ninputs = [\"train\"]\n[stages.fit]\nkind = \"fit\"\ninputs = [\"eval\"]\nform = \"power_n\"\n",
        "[pipeline]\nname = \"c\"\n[stages.a]\nkind = \"command\"\ncmd = \"echo {n} {m}\"\ntimeout = \"5s\"\nsweep_mode = \"zip\"\n[stages.a.sweep]\nn = [1, 2, 3]\nm = [\"x\", \"y\", \"z\"]\n[stages.b]\nkind = \"command\"\ninputs = [\"a\"]\nforeach = [\"a\"]\ncmd = \"true\"\nthreads = 2\n",
        "[pipeline]\nname = \"m\"\n[stages.text]\nkind = \"dataset.markov_text\"\ntokens = 1000\nvocab = 8\n[stages.lm]\nkind = \"train\"\ninputs = [\"text\"]\nmodel = \"transformer\"\nd_model = 8\nn_layers = 1\nn_heads = 2\ncontext = 8\nsteps = 1\n[stages.rep]\nkind = \"report\"\ninputs = [\"lm\"]\n",
    ];
    let tokens: &[&[u8]] = &[
        b"[",
        b"]",
        b"{",
        b"}",
        b"=",
        b"\"",
        b"\n",
        b",",
        b".",
        b"0",
        b"-1",
        b"1e999",
        b"99999999999999999999",
        b"[stages.a]",
        b"kind",
        b"inputs = [\"a\"]",
        b"sweep",
        b"timeout",
        b"\xff",
        b"\xc3",
        b"#",
        b" ",
        b"[1, 1]",
        b"true",
        b"nan",
        b"[[x]]",
        b"\\u0000",
        b"'''",
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5ca1e);
    let deadline = Instant::now() + Duration::from_secs(8);
    let (mut executions, mut ok, mut errors) = (0usize, 0usize, 0usize);
    let mut panics = Vec::new();
    while executions < 20_000 && Instant::now() < deadline {
        let mut bytes = seeds[executions % seeds.len()].as_bytes().to_vec();
        for _ in 0..rng.gen_range(1..=4) {
            let at = rng.gen_range(0..=bytes.len());
            match rng.gen_range(0..4) {
                0 => {
                    let end = (at + rng.gen_range(1..8)).min(bytes.len());
                    bytes.drain(at..end);
                }
                1 => {
                    let t = tokens[rng.gen_range(0..tokens.len())];
                    bytes.splice(at..at, t.iter().copied());
                }
                2 => {
                    let b = rng.gen::<u8>();
                    bytes.insert(at, b);
                }
                _ => {
                    // Duplicate a line somewhere else.
                    let text = bytes.clone();
                    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
                    let line = lines[rng.gen_range(0..lines.len())];
                    let mut with_newline = line.to_vec();
                    with_newline.push(b'\n');
                    let at = bytes[..at]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |p| p + 1);
                    bytes.splice(at..at, with_newline);
                }
            }
        }
        executions += 1;
        let result = std::panic::catch_unwind(|| {
            let text = match String::from_utf8(bytes.clone()) {
                Ok(text) => text,
                // Non-UTF-8 is caught by `Pipeline::load` (covered by the corpus).
                Err(_) => return Ok(()),
            };
            match Pipeline::parse(Source::new("fuzz.toml", text)).and_then(Plan::build) {
                Ok(plan) => {
                    std::mem::forget(plan);
                    Ok(())
                }
                Err(diagnostic) => {
                    Err(diagnostic.line().is_some() || diagnostic.to_string().contains("fuzz.toml"))
                }
            }
        });
        match result {
            Ok(Ok(())) => ok += 1,
            Ok(Err(located)) => {
                errors += 1;
                assert!(
                    located,
                    "an error without a location for:\n{}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            Err(_) => panics.push(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }
    eprintln!(
        "fuzz: {executions} executions, {ok} valid, {errors} located errors, {} panics",
        panics.len()
    );
    assert!(
        executions >= 500,
        "only {executions} executions in the time bound"
    );
    assert!(
        panics.is_empty(),
        "{} panics, first on:\n{}",
        panics.len(),
        panics[0]
    );
}
