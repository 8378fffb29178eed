//! Safe defaults, progress and CLI frictions through the real binary: token
//! split units and held-out caps of `dataset.text`, gitignore-style globs and
//! `exclude`, the char vocabulary cap, periodic loss lines in a train log,
//! progress on stderr with `--json`, JSON errors, the workspace default, the end
//! of a run naming reports and laws, and the generated kinds reference.

use std::path::Path;

use crate::harness::Workspace;

/// `meta.json` of a dataset instance as published under `results/`.
fn meta(ws: &Workspace, pipeline: &str, id: &str) -> serde_json::Value {
    serde_json::from_str(&ws.read(&format!("results/{pipeline}/{id}/meta.json"))).unwrap()
}

/// The log of an executed instance, found through its fingerprint in `run.json`.
fn log_of(ws: &Workspace, pipeline: &str, id: &str) -> String {
    let record: serde_json::Value =
        serde_json::from_str(&ws.read(&format!("results/{pipeline}/run.json"))).unwrap();
    let fp = record["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in run.json"))["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    ws.read(&format!(".scalepipe/cache/{fp}/log.txt"))
}

/// Sorted source paths recorded in a dataset's `meta.json`.
fn sources(meta: &serde_json::Value) -> Vec<String> {
    meta["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap().to_string())
        .collect()
}

/// Text of `len` bytes made of varied ASCII lines.
fn corpus(len: usize) -> String {
    let line = "the quick brown fox jumps over the lazy dog 0123456789\n";
    line.repeat(len / line.len() + 1)[..len].to_string()
}

#[test]
fn text_split_counts_are_tokens_and_default_held_out_sets_are_capped() {
    let ws = Workspace::new();
    // 3M tokens: 10% would be 300,000 per held-out set, above the 250,000 cap.
    ws.write("corpus/big.txt", &corpus(3_000_000 / 256 * 256));
    ws.write(
        "p.toml",
        r#"
[pipeline]
name = "p"
[stages.capped]
kind = "dataset.text"
path = "corpus"
tokens = 100000
[stages.given]
kind = "dataset.text"
path = "corpus"
tokens = 100000
split = { val = 1000, test = 0.001 }
"#,
    );
    ws.run(&["run", "p.toml"]).success();
    let capped = meta(&ws, "p", "capped");
    let val = capped["n_val"].as_u64().unwrap();
    let test = capped["n_test"].as_u64().unwrap();
    assert!(
        (250_000..250_000 + 256).contains(&val),
        "default val should be capped at 250,000 tokens (whole blocks), got {val}"
    );
    assert_eq!(val, test);
    assert_eq!(capped["n_train"], 100_000);
    // A count is tokens rounded up to whole 256-token blocks; a fraction is of tokens.
    let given = meta(&ws, "p", "given");
    assert_eq!(given["n_val"], 1024);
    assert_eq!(given["n_test"], 3072);
}

#[test]
fn text_glob_star_stays_in_its_directory_and_exclude_removes_files() {
    let ws = Workspace::new();
    for f in [
        "lib/a.py",
        "lib/pkg/b.py",
        "lib/pkg/test_c.py",
        "lib/notes.txt",
    ] {
        ws.write(f, &corpus(2_000));
    }
    ws.write(
        "p.toml",
        r#"
[pipeline]
name = "p"
[stages.top]
kind = "dataset.text"
path = "lib"
glob = "*.py"
block = 16
[stages.deep]
kind = "dataset.text"
path = "lib"
glob = "**/*.py"
exclude = ["**/test_*.py"]
block = 16
"#,
    );
    ws.run(&["run", "p.toml"]).success();
    assert_eq!(sources(&meta(&ws, "p", "top")), ["lib/a.py"]);
    assert_eq!(
        sources(&meta(&ws, "p", "deep")),
        ["lib/a.py", "lib/pkg/b.py"]
    );
}

#[test]
fn text_char_vocab_cap_maps_rare_characters_to_one_unknown_id() {
    let ws = Workspace::new();
    // 'a' x 600, 'b' x 300, then rare characters.
    let text = format!("{}{}xyz\u{e9}", "a".repeat(600), "b".repeat(300));
    ws.write("c.txt", &text);
    ws.write(
        "p.toml",
        r#"
[pipeline]
name = "p"
[stages.data]
kind = "dataset.text"
path = "c.txt"
tokenizer = "char"
max_vocab = 3
block = 8
"#,
    );
    ws.run(&["run", "p.toml"]).success();
    let m = meta(&ws, "p", "data");
    assert_eq!(m["vocab"], 3);
    assert_eq!(m["extra"]["chars"], serde_json::json!(["a", "b"]));
    assert_eq!(m["extra"]["unknown_id"], 2);
    assert_eq!(m["extra"]["unknown_chars"], 4);
    // max_vocab means nothing to bytes: a clear error before anything runs.
    ws.write(
        "bad.toml",
        "[pipeline]\nname = \"bad\"\n[stages.data]\nkind = \"dataset.text\"\npath = \"c.txt\"\nmax_vocab = 3\n",
    );
    let out = ws.run(&["run", "bad.toml"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr.contains("max_vocab") && out.stderr.contains("char"),
        "{}",
        out.stderr
    );
}

#[test]
fn held_out_larger_than_training_warns_in_log_and_terminal() {
    let ws = Workspace::new();
    ws.write("c.txt", &corpus(20_000));
    ws.write(
        "p.toml",
        "[pipeline]\nname = \"p\"\n[stages.data]\nkind = \"dataset.text\"\npath = \"c.txt\"\nblock = 16\ntokens = 500\n",
    );
    let out = ws.run(&["run", "p.toml"]).success();
    assert!(
        out.stderr
            .contains("warning data: held-out data outweighs training data"),
        "{}",
        out.stderr
    );
    let log = log_of(&ws, "p", "data");
    assert!(log.contains("warning: held-out data outweighs"), "{log}");
    assert!(log.contains("corpus: 1 file(s), 20000 tokens"), "{log}");
}

/// A small study: Markov data, two transformers trained for 100 steps, eval, a
/// fit and a report.
const STUDY: &str = r#"
[pipeline]
name = "study"
seed = 1
[stages.data]
kind = "dataset.markov_text"
vocab = 8
tokens = 20000
split = { val = 2000, test = 2000 }
[stages.train]
kind = "train"
inputs = ["data"]
model = "transformer"
n_layers = 1
n_heads = 1
context = 8
batch_size = 4
steps = 100
[stages.train.sweep]
d_model = [4, 8, 16]
[stages.eval]
kind = "eval"
inputs = ["train"]
[stages.fit]
kind = "fit"
inputs = ["eval"]
form = "power_n"
[stages.report]
kind = "report"
inputs = ["fit", "eval"]
"#;

#[test]
fn json_run_prints_progress_on_stderr_and_one_object_on_stdout() {
    let ws = Workspace::new();
    ws.write("p.toml", STUDY);
    // Lines start at once here (by default after 2 s, which these tiny stages
    // never reach).
    let out = ws
        .run_with_env(
            &["run", "p.toml", "--json", "--jobs", "1"],
            &[("SCALEPIPE_PROGRESS_AFTER", "0")],
        )
        .success();
    let json = out.json();
    assert_eq!(json["pipeline"], "study");
    // Progress lines of the training runs, with percentages, loss and D.
    let train_lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("train[d_model=8]:") && l.contains('%'))
        .collect();
    assert!(train_lines.len() >= 5, "{}", out.stderr);
    assert!(train_lines
        .iter()
        .any(|l| l.contains("loss ") && l.contains("D ")));
    assert!(out.stderr.contains("workspace: "), "{}", out.stderr);
    // The end of the run names the report and the fitted law.
    let report_line = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .unwrap_or_else(|| panic!("no report line in {}", out.stderr));
    assert!(Path::new(report_line).is_file(), "{report_line}");
    assert!(out
        .stderr
        .lines()
        .any(|l| l.starts_with("law fit: ") && l.contains("alpha = ")));
    // The train log has a loss line every 5% of the steps.
    let log = log_of(&ws, "study", "train[d_model=8]");
    let loss_lines = log
        .lines()
        .filter(|l| l.starts_with("step ") && l.contains("loss "))
        .count();
    assert!(loss_lines >= 10, "{log}");
    assert!(log.contains("step 100/100: loss "), "{log}");
    // Without `command`, Reproduce names the pipeline file that was run.
    let report_md =
        std::fs::read_to_string(Path::new(report_line).with_file_name("report.md")).unwrap();
    assert!(report_md.contains("scalepipe run p.toml"), "{report_md}");
}

#[test]
fn json_errors_are_one_json_object_with_file_line_and_column() {
    let ws = Workspace::new();
    ws.write(
        "bad.toml",
        "[pipeline]\nname = \"bad\"\n[stages.data]\nkind = \"dataset.teacher\"\nn = 100\nwidht = 3\n",
    );
    for command in ["run", "plan"] {
        let out = ws.run(&[command, "bad.toml", "--json"]);
        assert_eq!(out.code, 2);
        let json = out.json();
        assert_eq!(json["file"], "bad.toml", "{json}");
        assert_eq!(json["line"], 6, "{json}");
        assert_eq!(json["column"], 1, "{json}");
        assert_eq!(json["exit_code"], 2);
        assert!(json["error"].as_str().unwrap().contains("widht"), "{json}");
    }
    let out = ws.run(&["run", "missing.toml", "--json"]);
    assert_eq!(out.code, 2);
    assert_eq!(out.json()["file"], "missing.toml");
    assert!(!ws.join(".scalepipe").exists() && !ws.join("results").exists());
}

#[test]
fn the_default_workspace_is_found_from_the_pipeline_file() {
    let ws = Workspace::new();
    let text =
        "[pipeline]\nname = \"p\"\n[stages.a]\nkind = \"command\"\ncmd = \"echo 1 > a.txt\"\n";
    ws.write("study/p.toml", text);
    // From a directory above the file: that directory (pipelines/ and results/
    // side by side, as in this repository).
    let out = ws.run(&["run", "study/p.toml"]).success();
    assert!(ws.join(".scalepipe").is_dir());
    assert!(ws.join("results/p/a/a.txt").is_file());
    assert!(!ws.join("study/.scalepipe").exists());
    assert!(out.stderr.contains("workspace: "), "{}", out.stderr);
    // From inside the pipeline's directory, and from an unrelated directory: the
    // nearest `.scalepipe/` above the file, so nothing runs again.
    let elsewhere = tempfile::tempdir().unwrap();
    for (dir, file) in [
        (ws.join("study"), "p.toml".to_string()),
        (
            elsewhere.path().to_path_buf(),
            ws.join("study/p.toml").display().to_string(),
        ),
    ] {
        let again = ws
            .command(&["run", &file, "--json"])
            .current_dir(&dir)
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(json["cached"], serde_json::json!(["a"]), "from {dir:?}");
    }
    assert!(!elsewhere.path().join(".scalepipe").exists());
    // A pipeline outside the current directory with no cache above it: its own
    // directory, not the current one.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("q.toml"), text).unwrap();
    ws.run(&["run", &other.path().join("q.toml").display().to_string()])
        .success();
    assert!(other.path().join(".scalepipe").is_dir());
    assert!(other.path().join("results/p/a/a.txt").is_file());
    // --workspace still wins.
    ws.run(&["run", "study/p.toml", "--workspace", "study"])
        .success();
    assert!(ws.join("study/.scalepipe").is_dir());
}

#[test]
fn kinds_reference_in_docs_is_up_to_date() {
    let ws = Workspace::new();
    let out = ws.run(&["kinds", "--markdown"]).success();
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/kinds.md"))
            .unwrap();
    assert!(
        out.stdout == committed,
        "docs/kinds.md is stale: run `cargo run --release -- kinds --markdown > docs/kinds.md`"
    );
    for key in [
        "embed_dim",
        "max_tokens",
        "exclude",
        "max_vocab",
        "steps x batch_size",
    ] {
        assert!(committed.contains(key), "{key}");
    }
}

#[test]
fn d_sweep_over_a_prefix_stage_reads_the_corpus_once() {
    let ws = Workspace::new();
    ws.write("corpus/a.txt", &corpus(40_000));
    ws.write(
        "p.toml",
        r#"
[pipeline]
name = "p"
seed = 3
[stages.corpus]
kind = "dataset.text"
path = "corpus"
block = 64
split = { val = 2000, test = 2000 }
[stages.data]
kind = "dataset.prefix"
inputs = ["corpus"]
[stages.data.sweep]
tokens = [1000, 4000, 16000]
[stages.direct]
kind = "dataset.text"
path = "corpus"
block = 64
split = { val = 2000, test = 2000 }
seed = 3
tokens = 4000
"#,
    );
    let out = ws.run(&["run", "p.toml", "--json"]).success();
    let json = out.json();
    let executed = crate::harness::ids(&json, "executed");
    assert_eq!(
        executed
            .iter()
            .filter(|id| id.starts_with("corpus"))
            .count(),
        1
    );
    // Only the corpus stage read and tokenised files.
    assert!(log_of(&ws, "p", "corpus").contains("corpus: 1 file(s), 40000 tokens"));
    for d in [1000, 4000, 16000] {
        let id = format!("data[tokens={d}]");
        let log = log_of(&ws, "p", &id);
        assert!(!log.contains("corpus:"), "{log}");
        assert!(log.contains(&format!("first {d} of ")), "{log}");
        // The entry holds D tokens; held-out files are the corpus's.
        let dir = format!("results/p/{id}");
        assert_eq!(
            std::fs::metadata(ws.join(&format!("{dir}/train.bin")))
                .unwrap()
                .len(),
            4 * d
        );
        assert_eq!(
            std::fs::read(ws.join(&format!("{dir}/val.bin"))).unwrap(),
            std::fs::read(ws.join("results/p/corpus/val.bin")).unwrap()
        );
        assert_eq!(meta(&ws, "p", &id)["n_train"], d);
    }
    // The same tokens as dataset.text with that `tokens`.
    for file in ["train.bin", "train.offsets.bin", "val.bin", "test.bin"] {
        assert_eq!(
            std::fs::read(ws.join(&format!("results/p/data[tokens=4000]/{file}"))).unwrap(),
            std::fs::read(ws.join(&format!("results/p/direct/{file}"))).unwrap(),
            "{file}"
        );
    }
}

/// A labelled CSV table of `rows` rows: a text column and a two-class label.
fn labelled_table(rows: usize) -> String {
    let mut csv = String::from("text,label\n");
    for i in 0..rows {
        let (word, label) = if i % 3 == 0 {
            ("good", "pos")
        } else {
            ("bad", "neg")
        };
        csv.push_str(&format!("{word} film number {i},{label}\n"));
    }
    csv
}

#[test]
fn n_sweep_over_a_prefix_stage_reads_the_table_once() {
    let ws = Workspace::new();
    ws.write("t.csv", &labelled_table(1000));
    let table = r#"kind = "dataset.csv"
path = "t.csv"
text = "text"
label = "label"
task = "classification"
max_len = 6
split = { val = 100, test = 100 }"#;
    ws.write(
        "p.toml",
        &format!(
            r#"
[pipeline]
name = "p"
seed = 5
[stages.table]
{table}
[stages.data]
kind = "dataset.prefix"
inputs = ["table"]
[stages.data.sweep]
n = [100, 200, 400]
[stages.direct]
{table}
n = 200
[stages.wrong]
kind = "dataset.prefix"
inputs = ["table"]
tokens = 100
"#
        ),
    );
    let out = ws.run(&["run", "p.toml", "--json", "--keep-going"]);
    assert_eq!(out.code, 1, "{out:#?}");
    let json = out.json();
    // Asking a table for tokens fails, naming the unit it takes.
    assert_eq!(crate::harness::ids(&json, "failed"), ["wrong"]);
    assert!(
        out.stderr.contains("give its size as `n` (rows)"),
        "{}",
        out.stderr
    );
    let executed = crate::harness::ids(&json, "executed");
    assert_eq!(
        executed.iter().filter(|id| id.starts_with("table")).count(),
        1
    );
    // Only the table stage (and the direct loader) read the file.
    assert!(log_of(&ws, "p", "table").contains("read t.csv: 1000 rows"));
    for n in [100, 200, 400] {
        let id = format!("data[n={n}]");
        let log = log_of(&ws, "p", &id);
        assert!(!log.contains("read t.csv"), "{log}");
        assert!(
            log.contains(&format!("first {n} of 800 training rows")),
            "{log}"
        );
        let m = meta(&ws, "p", &id);
        assert_eq!(m["n_train"], n);
        assert_eq!(m["vocab"], meta(&ws, "p", "table")["vocab"]);
        let dir = format!("results/p/{id}");
        for file in ["val.parquet", "test.parquet", "source.parquet"] {
            assert_eq!(
                std::fs::read(ws.join(&format!("{dir}/{file}"))).unwrap(),
                std::fs::read(ws.join(&format!("results/p/table/{file}"))).unwrap(),
                "{file}"
            );
        }
        let train =
            scalepipe::data::read_table(&ws.join(&dir), scalepipe::data::Split::Train).unwrap();
        assert_eq!(train.rows, n);
    }
    // The same rows as dataset.csv with that `n`, byte for byte.
    for file in ["train.parquet", "val.parquet", "test.parquet"] {
        assert_eq!(
            std::fs::read(ws.join(&format!("results/p/data[n=200]/{file}"))).unwrap(),
            std::fs::read(ws.join(&format!("results/p/direct/{file}"))).unwrap(),
            "{file}"
        );
    }
}

/// A table a `command` stage writes: the loader names the file in its input's
/// outputs, reads it when it runs, and follows the input when it changes.
#[test]
fn a_table_loader_reads_the_file_its_input_stage_wrote() {
    let ws = Workspace::new();
    let pipeline = |rows: usize, path: &str| {
        format!(
            r#"
[pipeline]
name = "p"
[stages.make]
kind = "command"
cmd = "python3 -c 'import sys; sys.stdout.write(open(sys.argv[1]).read())' {src} > made.csv"
src = "{src}"
[stages.table]
kind = "dataset.csv"
inputs = ["make"]
path = "{path}"
text = "text"
label = "label"
task = "classification"
split = {{ val = 10, test = 10 }}
"#,
            src = ws.join(&format!("src{rows}.csv")).display()
        )
    };
    ws.write("src100.csv", &labelled_table(100));
    ws.write("src120.csv", &labelled_table(120));
    ws.write("p.toml", &pipeline(100, "made.csv"));
    ws.run(&["run", "p.toml"]).success();
    assert!(log_of(&ws, "p", "table").contains("read made.csv: 100 rows"));
    assert_eq!(meta(&ws, "p", "table")["n_train"], 80);
    // A new table upstream re-runs the loader, which reads the new rows.
    ws.write("p.toml", &pipeline(120, "made.csv"));
    ws.run(&["run", "p.toml"]).success();
    assert_eq!(meta(&ws, "p", "table")["n_train"], 100);
    // A file the input did not write fails the stage, naming it.
    ws.write("p.toml", &pipeline(120, "other.csv"));
    let out = ws.run(&["run", "p.toml"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("wrote no file `other.csv`"),
        "{}",
        out.stderr
    );
    // A path leaving the input's directory is refused before anything runs.
    ws.write("p.toml", &pipeline(120, "../made.csv"));
    let out = ws.run(&["run", "p.toml"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr
            .contains("names a file in that stage's output directory"),
        "{}",
        out.stderr
    );
}

/// An eval that takes longer than the training it measures (one step of
/// training, a large validation split scored whole) warns in its log and on
/// the terminal; a capped one beside it does not.
#[test]
fn an_eval_longer_than_its_training_warns_in_log_and_terminal() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        r#"
[pipeline]
name = "p"
seed = 0
[stages.data]
kind = "dataset.markov_text"
vocab = 8
tokens = 2000
split = { val = 200000, test = 1000 }
[stages.train]
kind = "train"
inputs = ["data"]
model = "transformer"
d_model = 64
n_layers = 2
n_heads = 4
context = 64
batch_size = 1
steps = 1
[stages.eval]
kind = "eval"
inputs = ["train"]
max_tokens = 200000
[stages.capped]
kind = "eval"
inputs = ["train"]
max_tokens = 640
"#,
    );
    // One stage at a time: the capped eval's own time must not include a
    // neighbour competing for the same cores.
    let out = ws.run(&["run", "p.toml", "--jobs", "1"]).success();
    assert!(
        out.stderr.contains("warning eval: evaluation took"),
        "{}",
        out.stderr
    );
    let log = log_of(&ws, "p", "eval");
    assert!(log.contains("warning: evaluation took"), "{log}");
    assert!(log.contains("lower `max_tokens`"), "{log}");
    assert!(!out.stderr.contains("warning capped:"), "{}", out.stderr);
    assert!(!log_of(&ws, "p", "capped").contains("evaluation took"));
}

#[test]
fn word_min_count_maps_rare_words_to_unknown() {
    let ws = Workspace::new();
    let mut csv = String::from("text,label\n");
    for i in 0..40 {
        let (text, label) = if i % 2 == 0 {
            ("good film", "pos")
        } else {
            ("bad film", "neg")
        };
        csv.push_str(&format!("{text} rare{i},{label}\n"));
    }
    ws.write("t.csv", &csv);
    ws.write(
        "p.toml",
        "[pipeline]\nname = \"p\"\n[stages.data]\nkind = \"dataset.csv\"\npath = \"t.csv\"\ntext = \"text\"\nlabel = \"label\"\ntask = \"classification\"\nmin_count = 2\n",
    );
    ws.run(&["run", "p.toml"]).success();
    let m = meta(&ws, "p", "data");
    let words: Vec<&str> = m["extra"]["vocab_words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        words.contains(&"film") && words.contains(&"good"),
        "{words:?}"
    );
    assert!(!words.iter().any(|w| w.starts_with("rare")), "{words:?}");
    assert_eq!(m["vocab"], words.len() + 2);
}
