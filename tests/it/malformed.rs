//! Malformed pipeline files: each gives exit code 2, a message naming the file,
//! line and what was expected, and leaves the workspace exactly as it was.

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
