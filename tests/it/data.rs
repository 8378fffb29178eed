//! Dataset stages run end to end (without the engine): determinism, nested
//! subsampling, known irreducible losses, and each loader on good and bad files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use scalepipe::data::{
    read_meta, read_offsets, read_parquet, read_table, read_tokens, DatasetMeta, Split, Targets,
    Task,
};
use scalepipe::stages::{kind, ConfigureContext, Job, ParamError, StageContext};
use tempfile::TempDir;

/// The project's sample datasets.
fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets")
}

fn configure(kind_name: &str, params: &str, base: &Path) -> Result<Box<dyn Job>, ParamError> {
    let params: toml::Table = toml::from_str(params).expect("test params are TOML");
    let kind = kind(kind_name).unwrap_or_else(|| panic!("kind {kind_name} is registered"));
    let cx = ConfigureContext {
        base_dir: base,
        input_kinds: &[],
    };
    (kind.configure)(&params, &cx)
}

/// Configures and runs a stage into a fresh directory; the error text on failure.
fn run_in(kind_name: &str, params: &str, base: &Path) -> Result<(TempDir, DatasetMeta), String> {
    let stage = configure(kind_name, params, base)
        .map_err(|e| format!("{}: {}", e.key.unwrap_or_default(), e.message))?;
    let out = tempfile::tempdir().unwrap();
    let table: toml::Table = toml::from_str(params).unwrap();
    let cancel = AtomicBool::new(false);
    let ctx = StageContext::new(
        "test",
        out.path(),
        &[],
        &table,
        1,
        &cancel,
        &|_, _, _| {},
        None,
    );
    stage.run(&ctx).map_err(|e| e.to_string())?;
    let meta = read_meta(out.path()).unwrap();
    Ok((out, meta))
}

fn run(kind_name: &str, params: &str) -> (TempDir, DatasetMeta) {
    run_in(kind_name, params, &samples()).unwrap_or_else(|e| panic!("{kind_name} failed: {e}"))
}

fn run_err(kind_name: &str, params: &str, base: &Path) -> String {
    match run_in(kind_name, params, base) {
        Ok(_) => panic!("{kind_name} with {params:?} should fail"),
        Err(e) => {
            eprintln!("{kind_name} error: {e}");
            e
        }
    }
}

/// Every file of an output directory with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn assert_contains(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "expected {part:?} in error:\n{text}");
    }
}

/// Asserts that the first rows of `small` are exactly the rows of `large`'s prefix.
fn assert_table_prefix(small: &Path, large: &Path) {
    let s = read_table(small, Split::Train).unwrap();
    let l = read_table(large, Split::Train).unwrap();
    assert!(s.rows < l.rows);
    assert_eq!(s.cols, l.cols);
    assert_eq!(s.x[..], l.x[..s.rows * s.cols]);
    match (&s.y, &l.y) {
        (Targets::Regression(a), Targets::Regression(b)) => assert_eq!(a[..], b[..a.len()]),
        (Targets::Classes(a), Targets::Classes(b)) => assert_eq!(a[..], b[..a.len()]),
        _ => panic!("target kinds differ"),
    }
    for split in ["val.parquet", "test.parquet"] {
        assert_eq!(
            std::fs::read(small.join(split)).unwrap(),
            std::fs::read(large.join(split)).unwrap(),
            "{split} changed with n"
        );
    }
}

fn sample_variance(v: &[f64]) -> f64 {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64
}

// ---------------------------------------------------------------- registry

#[test]
fn every_dataset_kind_is_registered() {
    for name in [
        "dataset.teacher",
        "dataset.markov_text",
        "dataset.csv",
        "dataset.parquet",
        "dataset.text",
        "dataset.idx",
    ] {
        let k = kind(name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(k.takes_seed, "{name} takes a seed");
    }
}

#[test]
fn unknown_parameters_are_rejected() {
    let err = configure("dataset.teacher", "n = 10\nseed = 1\nwidht = 3", &samples())
        .err()
        .unwrap();
    assert_eq!(err.key.as_deref(), Some("widht"), "{err:?}");
    assert_contains(
        &err.message,
        &["unknown field `widht`, expected one of `n`,"],
    );
    let err = configure(
        "dataset.markov_text",
        "tokens = 10\nseed = 1\nsplit = {val = 10, tset = 3}",
        &samples(),
    )
    .err()
    .unwrap();
    assert_eq!(err.key.as_deref(), Some("split.tset"), "{err:?}");
    assert_contains(
        &err.message,
        &["unknown field `tset`, expected one of `train`,"],
    );
}

// ---------------------------------------------------------------- teacher

#[test]
fn teacher_same_seed_same_bytes_other_seed_different() {
    // More than one 65536-row group, so parallel column writing is covered too.
    let params = "n = 70000\ninput_dim = 5\nseed = 11\nsplit = {val = 50, test = 50}";
    let (a, _) = run("dataset.teacher", params);
    let (b, _) = run("dataset.teacher", params);
    assert_eq!(files(a.path()), files(b.path()));
    let (c, _) = run("dataset.teacher", &params.replace("seed = 11", "seed = 12"));
    let fa = files(a.path());
    let fc = files(c.path());
    for split in ["train.parquet", "val.parquet", "test.parquet"] {
        assert_ne!(fa[split], fc[split], "{split} should change with the seed");
    }
}

#[test]
fn teacher_training_sets_are_nested() {
    let base = "input_dim = 4\nseed = 3\nsplit = {val = 80, test = 80}\ntask = \"classification\"\nclasses = 3";
    let (small, meta) = run("dataset.teacher", &format!("n = 100\n{base}"));
    let (large, _) = run("dataset.teacher", &format!("n = 1e3\n{base}"));
    assert_eq!((meta.n_train, meta.n_val, meta.n_test), (100, 80, 80));
    assert_table_prefix(small.path(), large.path());
}

#[test]
fn teacher_regression_noise_variance_is_noise_std_squared() {
    let base = "n = 20000\ninput_dim = 8\nseed = 5\nsplit = {val = 10, test = 10}";
    let (clean, _) = run("dataset.teacher", &format!("{base}\nnoise_std = 0.0"));
    let (noisy, meta) = run("dataset.teacher", &format!("{base}\nnoise_std = 0.5"));
    assert_eq!(meta.task, Task::Regression);
    assert_eq!(meta.irreducible_loss, Some(0.25));
    let clean = read_table(clean.path(), Split::Train).unwrap();
    let noisy = read_table(noisy.path(), Split::Train).unwrap();
    assert_eq!(clean.x, noisy.x, "noise must not move the inputs");
    let (Targets::Regression(yc), Targets::Regression(yn)) = (&clean.y, &noisy.y) else {
        panic!("regression targets expected");
    };
    let residuals: Vec<f64> = yn.iter().zip(yc).map(|(a, b)| (a - b) as f64).collect();
    let var = sample_variance(&residuals);
    eprintln!("teacher noise variance {var:.5} (noise_std^2 = 0.25)");
    // The variance estimate's standard deviation is sigma^2 sqrt(2 / n) = 0.0025.
    assert!((var - 0.25).abs() < 4.0 * 0.0025, "noise variance {var}");
    // The clean targets are standardised: unit variance, so the noise is 50% of it.
    let clean_var = sample_variance(&yc.iter().map(|&v| v as f64).collect::<Vec<_>>());
    assert!(
        (clean_var - 1.0).abs() < 0.1,
        "teacher output variance {clean_var}"
    );
}

#[test]
fn teacher_classification_reports_its_bayes_loss() {
    let (out, meta) = run(
        "dataset.teacher",
        "n = 500\ninput_dim = 6\ntask = \"classification\"\nclasses = 4\ntemperature = 0.7\nseed = 9\nsplit = {val = 100, test = 4000}",
    );
    assert_eq!(meta.task, Task::Classification);
    assert_eq!(meta.classes, Some(4));
    let bayes = meta.irreducible_loss.unwrap();
    assert!(bayes > 0.0 && bayes < 4f64.ln(), "{bayes}");
    // The teacher's own cross-entropy on 4000 test labels estimates the same number.
    let teacher_test = meta.extra["teacher_test_loss"].as_f64().unwrap();
    assert!(
        (teacher_test - bayes).abs() < 0.06,
        "{teacher_test} vs {bayes}"
    );
    let test = read_table(out.path(), Split::Test).unwrap();
    let Targets::Classes(labels) = test.y else {
        panic!("classes expected")
    };
    assert!(labels.iter().all(|&y| y < 4));
    for class in 0..4 {
        assert!(labels.contains(&class), "class {class} never sampled");
    }
}

#[test]
fn teacher_rejects_fractional_held_out_sets() {
    let err = configure(
        "dataset.teacher",
        "n = 100\nseed = 1\nsplit = {train = 0.8, val = 0.1, test = 0.1}",
        &samples(),
    )
    .err()
    .unwrap();
    assert_eq!(err.key.as_deref(), Some("split.train"));
    assert_contains(&err.message, &["training size is `n`"]);
}

// ---------------------------------------------------------------- markov text

/// Plug-in estimate of H(X_t | previous `order` symbols) from counts, in nats.
fn empirical_conditional_entropy(ids: &[u32], order: usize) -> f64 {
    let entropy = |k: usize| {
        let mut counts: BTreeMap<&[u32], u64> = BTreeMap::new();
        for w in ids.windows(k.max(1)) {
            *counts.entry(&w[..k]).or_default() += 1;
        }
        let total: u64 = counts.values().sum();
        -counts
            .values()
            .map(|&c| {
                let p = c as f64 / total as f64;
                p * p.ln()
            })
            .sum::<f64>()
    };
    entropy(order + 1) - if order == 0 { 0.0 } else { entropy(order) }
}

#[test]
fn markov_entropy_rate_matches_a_long_sample() {
    for (vocab, order, zipf) in [(16, 1, 1.1), (6, 2, 0.8), (12, 0, 1.5)] {
        let (out, meta) = run(
            "dataset.markov_text",
            &format!("tokens = 2e6\nvocab = {vocab}\norder = {order}\nzipf = {zipf}\nseed = 4\nsplit = {{val = 1000, test = 1000}}"),
        );
        assert_eq!(meta.task, Task::LanguageModel);
        assert_eq!(meta.vocab, Some(vocab));
        let rate = meta.irreducible_loss.unwrap();
        let tokens = read_tokens(out.path(), Split::Train).unwrap();
        assert_eq!(tokens.ids.len(), 2_000_000);
        let empirical = empirical_conditional_entropy(&tokens.ids, order);
        let rel = (empirical - rate).abs() / rate;
        eprintln!("markov vocab {vocab} order {order}: rate {rate:.5}, empirical {empirical:.5}");
        assert!(
            rel < 0.01,
            "vocab {vocab} order {order}: reported {rate}, empirical {empirical} ({:.3}%)",
            100.0 * rel
        );
        // Context helps: the unigram entropy is above the rate (equal at order 0).
        let unigram = meta.extra["unigram_entropy"].as_f64().unwrap();
        assert!(unigram >= rate - 1e-9);
        if order > 0 {
            assert!(unigram > rate + 0.01, "unigram {unigram} rate {rate}");
        }
    }
}

#[test]
fn markov_streams_are_deterministic_and_nested() {
    let base = "vocab = 20\norder = 2\nseed = 8\nsplit = {val = 3000, test = 2000}";
    let (small, _) = run("dataset.markov_text", &format!("tokens = 1000\n{base}"));
    let (large, meta) = run("dataset.markov_text", &format!("tokens = 10000\n{base}"));
    let (again, _) = run("dataset.markov_text", &format!("tokens = 10000\n{base}"));
    let (other, _) = run(
        "dataset.markov_text",
        &format!("tokens = 10000\n{}", base.replace("seed = 8", "seed = 9")),
    );
    assert_eq!((meta.n_train, meta.n_val, meta.n_test), (10000, 3000, 2000));
    assert_eq!(files(large.path()), files(again.path()));
    assert_ne!(
        files(large.path())["train.bin"],
        files(other.path())["train.bin"]
    );
    let s = read_tokens(small.path(), Split::Train).unwrap();
    let l = read_tokens(large.path(), Split::Train).unwrap();
    assert_eq!(s.ids[..], l.ids[..1000]);
    for split in ["val.bin", "test.bin"] {
        assert_eq!(files(small.path())[split], files(large.path())[split]);
    }
    assert_eq!(read_offsets(large.path(), Split::Val).unwrap(), [0]);
}

#[test]
fn markov_state_space_is_guarded() {
    let err = configure(
        "dataset.markov_text",
        "tokens = 100\nvocab = 1000\norder = 3\nseed = 1",
        &samples(),
    )
    .err()
    .unwrap();
    assert_eq!(err.key.as_deref(), Some("order"));
    assert_contains(
        &err.message,
        &["1000^4", "limit", "lower `vocab` or `order`"],
    );
}

// ---------------------------------------------------------------- csv

#[test]
fn csv_regression_table_loads() {
    let params = "path = \"regression.csv\"\nlabel = \"price\"\ntask = \"regression\"\nn = 50\nseed = 2\nsplit = {train = 0.8, val = 0.1, test = 0.1}";
    let stage = configure("dataset.csv", params, &samples()).unwrap();
    assert_eq!(stage.files(), vec![samples().join("regression.csv")]);
    let (out, meta) = run("dataset.csv", params);
    assert_eq!(meta.task, Task::Regression);
    assert_eq!((meta.n_train, meta.n_val, meta.n_test), (50, 20, 20));
    assert_eq!(meta.input_dim, Some(4));
    assert_eq!(meta.sources.len(), 1);
    assert_eq!(meta.sources[0].path, "regression.csv");
    assert_eq!(meta.sources[0].blake3.len(), 64);
    let train = read_table(out.path(), Split::Train).unwrap();
    assert_eq!((train.rows, train.cols), (50, 4));
    assert!(train.x.iter().all(|v| v.is_finite()));
    let source = read_parquet(&out.path().join("source.parquet")).unwrap();
    assert_eq!(source.height(), 200);
    let names: Vec<String> = source
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(names, ["area", "rooms", "age", "distance", "price"]);
}

#[test]
fn csv_is_deterministic_and_nested() {
    let base = "path = \"regression.csv\"\nlabel = \"price\"\ntask = \"regression\"\nfeatures = [\"area\", \"age\"]\nseed = 6";
    let (small, _) = run("dataset.csv", &format!("n = 40\n{base}"));
    let (large, meta) = run("dataset.csv", &format!("n = 160\n{base}"));
    let (again, _) = run("dataset.csv", &format!("n = 160\n{base}"));
    let (other, _) = run(
        "dataset.csv",
        &format!("n = 160\n{}", base.replace("seed = 6", "seed = 7")),
    );
    assert_eq!(meta.input_dim, Some(2));
    assert_eq!(files(large.path()), files(again.path()));
    assert_ne!(
        files(large.path())["test.parquet"],
        files(other.path())["test.parquet"]
    );
    assert_table_prefix(small.path(), large.path());
    let err = run_err("dataset.csv", &format!("n = 161\n{base}"), &samples());
    assert_contains(&err, &["regression.csv", "n = 161", "only 160"]);
}

#[test]
fn csv_text_column_becomes_token_ids() {
    let (out, meta) = run(
        "dataset.csv",
        "path = \"sentiment.csv\"\ntext = \"text\"\nlabel = \"label\"\ntask = \"classification\"\nmax_len = 12\nmax_vocab = 30\nseed = 1",
    );
    assert_eq!(meta.task, Task::TextClassification);
    assert_eq!(meta.classes, Some(2));
    assert_eq!(meta.input_dim, Some(12));
    assert_eq!(meta.vocab, Some(30));
    assert_eq!(
        meta.extra["class_names"],
        serde_json::json!(["negative", "positive"])
    );
    let words = meta.extra["vocab_words"].as_array().unwrap();
    assert_eq!(words.len(), 28);
    let df = read_parquet(&out.path().join("train.parquet")).unwrap();
    assert_eq!(
        df.column("t0").unwrap().dtype(),
        &polars::prelude::DataType::UInt32
    );
    let train = read_table(out.path(), Split::Train).unwrap();
    assert_eq!(train.cols, 12);
    assert!(train.x.iter().all(|&id| id < 30.0));
    assert!(train.x.contains(&0.0), "short reviews are padded with 0");

    let (out, meta) = run(
        "dataset.csv",
        "path = \"sentiment.csv\"\ntext = \"text\"\nlabel = \"label\"\ntask = \"classification\"\ntokenizer = \"byte\"\nmax_len = 16\nseed = 1",
    );
    assert_eq!(meta.vocab, Some(257));
    let test = read_table(out.path(), Split::Test).unwrap();
    assert!(test.x.iter().all(|&id| id <= 256.0));
}

/// A scratch directory with files written by the test.
fn scratch(files: &[(&str, &[u8])]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

const GOOD_CSV: &[u8] = b"a,b,city,y\n1,2.5,paris,3\n2,,rome,4\n3,1.5,oslo,5\n4,0.5,rome,6\n";

#[test]
fn csv_bad_files_are_reported_with_file_and_column() {
    let dir = scratch(&[
        ("t.csv", GOOD_CSV),
        ("empty.csv", b""),
        ("header.csv", b"a,b,y\n"),
    ]);
    let base = dir.path();
    let p = |extra: &str| {
        format!("label = \"y\"\ntask = \"regression\"\nseed = 1\nsplit = {{val = 1, test = 1}}\n{extra}")
    };

    let err = run_err("dataset.csv", &p("path = \"missing.csv\""), base);
    assert_contains(&err, &["path", "missing.csv", "does not exist"]);

    let err = run_err(
        "dataset.csv",
        &p("path = \"t.csv\"\nfeatures = [\"a\", \"c\"]"),
        base,
    );
    assert_contains(
        &err,
        &[
            "t.csv",
            "feature column `c` not found",
            "`a`, `b`, `city`, `y`",
        ],
    );

    let err = run_err(
        "dataset.csv",
        &p("path = \"t.csv\"\nfeatures = [\"a\", \"city\"]"),
        base,
    );
    assert_contains(
        &err,
        &[
            "t.csv",
            "feature column `city`",
            "not numbers",
            "use `text`",
        ],
    );

    let err = run_err(
        "dataset.csv",
        &p("path = \"t.csv\"\nfeatures = [\"a\", \"b\"]"),
        base,
    );
    assert_contains(
        &err,
        &[
            "t.csv",
            "column `b` has 1 null value(s), the first in data row 2",
            "drop_nulls",
        ],
    );

    let err = run_err("dataset.csv", &p("path = \"empty.csv\""), base);
    assert_contains(&err, &["empty.csv", "the file is empty"]);

    let err = run_err("dataset.csv", &p("path = \"header.csv\""), base);
    assert_contains(&err, &["header.csv", "no rows"]);

    let err = run_err(
        "dataset.csv",
        &p("path = \"t.csv\"\ntask = \"ranking\"").replace("task = \"regression\"\n", ""),
        base,
    );
    assert_contains(&err, &["task", "unknown variant `ranking`"]);
}

#[test]
fn csv_drop_nulls_drops_rows_everywhere() {
    let dir = scratch(&[("t.csv", GOOD_CSV)]);
    let (out, meta) = run_in(
        "dataset.csv",
        "path = \"t.csv\"\nlabel = \"y\"\nfeatures = [\"a\", \"b\"]\ntask = \"regression\"\ndrop_nulls = true\nseed = 1\nsplit = {val = 1, test = 1}",
        dir.path(),
    )
    .unwrap();
    assert_eq!(meta.extra["dropped_rows"], 1);
    assert_eq!(meta.n_train, 1);
    let source = read_parquet(&out.path().join("source.parquet")).unwrap();
    assert_eq!(source.height(), 3);
    assert_eq!(source.column("b").unwrap().null_count(), 0);
}

#[test]
fn csv_classification_maps_labels_in_sorted_order() {
    let dir = scratch(&[(
        "t.csv",
        b"x,kind\n1,b\n2,a\n3,c\n4,a\n5,b\n6,c\n7,a\n8,b\n9,c\n10,a\n",
    )]);
    let (out, meta) = run_in(
        "dataset.csv",
        "path = \"t.csv\"\nlabel = \"kind\"\ntask = \"classification\"\nseed = 1\nsplit = {val = 0, test = 0}",
        dir.path(),
    )
    .unwrap();
    assert_eq!(meta.classes, Some(3));
    assert_eq!(
        meta.extra["class_names"],
        serde_json::json!(["a", "b", "c"])
    );
    let train = read_table(out.path(), Split::Train).unwrap();
    let Targets::Classes(y) = &train.y else {
        panic!("classes expected")
    };
    let kinds = ["b", "a", "c", "a", "b", "c", "a", "b", "c", "a"];
    for (row, &label) in y.iter().enumerate() {
        let x = train.x[row] as usize;
        let name = ["a", "b", "c"][label as usize];
        assert_eq!(name, kinds[x - 1], "row with x = {x}");
    }
}

// ---------------------------------------------------------------- parquet

#[test]
fn parquet_loader_matches_the_csv_loader() {
    let csv_params =
        "path = \"regression.csv\"\nlabel = \"price\"\ntask = \"regression\"\nn = 100\nseed = 2";
    let (csv_out, _) = run("dataset.csv", csv_params);
    let (pq_out, meta) = run_in(
        "dataset.parquet",
        &csv_params.replace("regression.csv", "source.parquet"),
        csv_out.path(),
    )
    .unwrap();
    assert_eq!(meta.kind, "dataset.parquet");
    for split in [
        "train.parquet",
        "val.parquet",
        "test.parquet",
        "source.parquet",
    ] {
        assert_eq!(
            files(csv_out.path())[split],
            files(pq_out.path())[split],
            "{split} differs between the CSV and Parquet loaders"
        );
    }
}

#[test]
fn parquet_bad_files_are_reported() {
    let (csv_out, _) = run(
        "dataset.csv",
        "path = \"sentiment.csv\"\nlabel = \"label\"\ntask = \"classification\"\ntext = \"text\"\nseed = 1",
    );
    let dir = csv_out.path();
    std::fs::write(dir.join("fake.parquet"), b"area,price\n1,2\n").unwrap();
    let p = |extra: &str| format!("task = \"regression\"\nseed = 1\n{extra}");

    let err = run_err(
        "dataset.parquet",
        &p("path = \"fake.parquet\"\nlabel = \"price\""),
        dir,
    );
    assert_contains(&err, &["fake.parquet"]);

    let err = run_err(
        "dataset.parquet",
        &p("path = \"source.parquet\"\nlabel = \"price\""),
        dir,
    );
    assert_contains(
        &err,
        &[
            "source.parquet",
            "label column `price` not found",
            "`text`, `label`",
        ],
    );

    let err = run_err(
        "dataset.parquet",
        &p("path = \"source.parquet\"\nlabel = \"label\""),
        dir,
    );
    assert_contains(
        &err,
        &[
            "source.parquet",
            "label column `label` holds str",
            "not numbers",
        ],
    );

    let err = run_err(
        "dataset.parquet",
        "path = \"source.parquet\"\nlabel = \"label\"\ntask = \"classification\"\nseed = 1",
        dir,
    );
    assert_contains(
        &err,
        &[
            "source.parquet",
            "feature column `text` holds str",
            "use `text`",
        ],
    );

    let err = run_err(
        "dataset.parquet",
        &p("path = \"source.parquet\"\nlabel = \"label\"\nseparator = \";\""),
        dir,
    );
    assert_contains(&err, &["separator", "only dataset.csv"]);

    let err = run_err(
        "dataset.parquet",
        &p("path = \"nope.parquet\"\nlabel = \"y\""),
        dir,
    );
    assert_contains(&err, &["nope.parquet", "does not exist"]);
}

// ---------------------------------------------------------------- text

#[test]
fn text_corpus_is_read_in_sorted_order_as_bytes() {
    let params = "path = \"text\"\nglob = \"**/*.txt\"\nblock = 64\nseed = 1";
    let stage = configure("dataset.text", params, &samples()).unwrap();
    let text_dir = samples().join("text");
    assert_eq!(
        stage.files(),
        vec![
            text_dir.join("a.txt"),
            text_dir.join("b.txt"),
            text_dir.join("more/c.txt")
        ]
    );
    let (out, meta) = run("dataset.text", params);
    assert_eq!(meta.vocab, Some(256));
    let paths: Vec<&str> = meta.sources.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["text/a.txt", "text/b.txt", "text/more/c.txt"]);
    let corpus: Vec<u8> = ["a.txt", "b.txt", "more/c.txt"]
        .iter()
        .flat_map(|f| std::fs::read(text_dir.join(f)).unwrap())
        .collect();
    assert_eq!(meta.n_train + meta.n_val + meta.n_test, corpus.len());
    // Every block of the training split is a piece of the corpus at a block boundary.
    let train = read_tokens(out.path(), Split::Train).unwrap();
    let offsets = read_offsets(out.path(), Split::Train).unwrap();
    for (i, &start) in offsets.iter().enumerate() {
        let end = offsets.get(i + 1).map_or(train.ids.len() as u64, |&e| e);
        let piece: Vec<u8> = train.ids[start as usize..end as usize]
            .iter()
            .map(|&b| b as u8)
            .collect();
        let found = corpus.chunks(64).any(|block| block == piece.as_slice());
        assert!(found, "training piece {i} is not a corpus block");
    }
}

#[test]
fn text_char_level_vocab_is_in_meta_and_training_sets_nest() {
    let base = "path = \"text\"\ntokenizer = \"char\"\nblock = 32\nseed = 5\nsplit = {val = 0.2, test = 0.1}";
    let (small, meta) = run("dataset.text", &format!("tokens = 500\n{base}"));
    let (large, _) = run("dataset.text", &format!("tokens = 3000\n{base}"));
    let chars: Vec<String> = meta.extra["chars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(meta.vocab, Some(chars.len()));
    assert!(chars.contains(&"\n".to_string()) && chars.contains(&"?".to_string()));
    let mut sorted = chars.clone();
    sorted.sort();
    assert_eq!(chars, sorted);
    let s = read_tokens(small.path(), Split::Train).unwrap();
    let l = read_tokens(large.path(), Split::Train).unwrap();
    assert_eq!((s.ids.len(), l.ids.len()), (500, 3000));
    assert_eq!(s.ids[..], l.ids[..500]);
    for split in ["val.bin", "test.bin", "val.offsets.bin"] {
        assert_eq!(files(small.path())[split], files(large.path())[split]);
    }
    let decoded: String = s.ids.iter().map(|&i| chars[i as usize].as_str()).collect();
    assert!(decoded.contains(' '));
    let (again, _) = run("dataset.text", &format!("tokens = 3000\n{base}"));
    assert_eq!(files(large.path()), files(again.path()));
}

#[test]
fn text_bad_files_are_reported_unless_skipped() {
    let dir = scratch(&[
        ("corpus/good.txt", b"hello world, hello text\n".as_slice()),
        ("corpus/image.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
        ("corpus/latin1.txt", b"caf\xe9 au lait\n"),
    ]);
    let base = dir.path();
    let p = |extra: &str| {
        format!("path = \"corpus\"\nblock = 4\nseed = 1\nsplit = {{val = 1, test = 1}}\n{extra}")
    };

    let err = run_err("dataset.text", &p(""), base);
    assert_contains(
        &err,
        &[
            "2 of 3 corpus file(s)",
            "image.png: binary file (NUL byte at offset 8)",
            "latin1.txt: not UTF-8 text (invalid byte at offset 3)",
            "skip_unreadable",
        ],
    );

    let (_, meta) = run_in("dataset.text", &p("skip_unreadable = true"), base).unwrap();
    assert_eq!(meta.sources.len(), 1);
    let skipped = meta.extra["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2);
    assert_eq!(skipped[0]["path"], "corpus/image.png");

    let err = run_err("dataset.text", &p("glob = \"**/*.md\""), base);
    assert_contains(&err, &["glob", "no file under", "matches `**/*.md`"]);

    let err = run_err(
        "dataset.text",
        &p("").replace("\"corpus\"", "\"nowhere\""),
        base,
    );
    assert_contains(&err, &["path", "nowhere", "does not exist"]);

    let err = run_err(
        "dataset.text",
        &p("glob = \"good.txt\"\ntokens = 1000"),
        base,
    );
    assert_contains(&err, &["tokens = 1000 training tokens", "only"]);
}

// ---------------------------------------------------------------- idx

#[test]
fn idx_digits_load_scaled_to_unit_range() {
    let params = "images = \"digits/images.idx3-ubyte\"\nlabels = \"digits/labels.idx1-ubyte\"\nn = 60\nseed = 3";
    let stage = configure("dataset.idx", params, &samples()).unwrap();
    assert_eq!(stage.files().len(), 2);
    let (out, meta) = run("dataset.idx", params);
    assert_eq!(meta.task, Task::Classification);
    assert_eq!((meta.n_train, meta.n_val, meta.n_test), (60, 10, 10));
    assert_eq!(meta.input_dim, Some(64));
    assert_eq!(meta.classes, Some(10));
    assert_eq!(meta.extra["image_shape"], serde_json::json!([8, 8]));
    let train = read_table(out.path(), Split::Train).unwrap();
    assert!(train.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert!(train.x.iter().any(|&v| v > 0.6));
    let (large, _) = run("dataset.idx", &params.replace("n = 60", "n = 80"));
    assert_table_prefix(out.path(), large.path());
}

fn idx_bytes(type_code: u8, dims: &[u32], data_len: usize) -> Vec<u8> {
    let mut out = vec![0, 0, type_code, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend(std::iter::repeat_n(7u8, data_len));
    out
}

#[test]
fn idx_bad_files_are_reported() {
    let labels = idx_bytes(0x08, &[10], 10);
    let dir = scratch(&[
        ("good-images", &idx_bytes(0x08, &[10, 2, 2], 40)),
        ("labels", &labels),
        ("nine-labels", &idx_bytes(0x08, &[9], 9)),
        ("truncated", &idx_bytes(0x08, &[10, 2, 2], 39)),
        ("gz", b"\x1f\x8b\x08\x00rest"),
        ("magic", b"\x08\x03\x00\x00\x00\x00\x00\x00"),
        ("floats", &idx_bytes(0x0D, &[10, 1], 40)),
    ]);
    let base = dir.path();
    let p = |images: &str, labels: &str| {
        format!(
            "images = \"{images}\"\nlabels = \"{labels}\"\nseed = 1\nsplit = {{val = 2, test = 2}}"
        )
    };
    run_in("dataset.idx", &p("good-images", "labels"), base).unwrap();

    let err = run_err("dataset.idx", &p("truncated", "labels"), base);
    assert_contains(&err, &["truncated", "10 x 2 x 2 = 40 bytes", "holds 39"]);
    let err = run_err("dataset.idx", &p("gz", "labels"), base);
    assert_contains(&err, &["gz", "gzip-compressed"]);
    let err = run_err("dataset.idx", &p("magic", "labels"), base);
    assert_contains(&err, &["magic", "bad magic number 0x08030000"]);
    let err = run_err("dataset.idx", &p("floats", "labels"), base);
    assert_contains(&err, &["floats", "data type 0x0d is not supported"]);
    let err = run_err("dataset.idx", &p("good-images", "nine-labels"), base);
    assert_contains(&err, &["holds 10 images", "nine-labels holds 9 labels"]);
    let err = run_err("dataset.idx", &p("labels", "labels"), base);
    assert_contains(&err, &["at least 2 dimensions"]);
    let err = run_err("dataset.idx", &p("good-images", "absent"), base);
    assert_contains(&err, &["labels", "absent", "does not exist"]);
}

/// Through the engine: editing a CSV re-runs the stage that reads it and what
/// depends on it, and nothing else.
#[test]
fn editing_an_input_file_reruns_only_the_affected_stages() {
    let ws = crate::harness::Workspace::new();
    let mut csv = String::from("a,b,y\n");
    for i in 0..60 {
        csv.push_str(&format!("{i},{},{}\n", i % 7, i * 2));
    }
    ws.write("data/table.csv", &csv);
    ws.write(
        "p.toml",
        r#"
[pipeline]
name = "edit"
seed = 1

[stages.table]
kind = "dataset.csv"
path = "data/table.csv"
label = "y"
task = "regression"
sweep = { n = [10, 20] }

[stages.rows]
kind = "command"
inputs = ["table"]
foreach = ["table"]
cmd = "echo counted > rows.txt"

[stages.lm]
kind = "dataset.markov_text"
vocab = 8
order = 1
zipf = 1.1
tokens = 2000
"#,
    );
    let first = ws.run(&["run", "p.toml", "--json"]).success().json();
    assert_eq!(crate::harness::ids(&first, "executed").len(), 5, "{first}");

    csv.push_str("60,4,120\n");
    ws.write("data/table.csv", &csv);
    let plan = ws.run(&["plan", "p.toml"]).success();
    assert!(
        plan.stdout.contains("file changed: data/table.csv"),
        "{}",
        plan.stdout
    );
    let second = ws.run(&["run", "p.toml", "--json"]).success().json();
    assert_eq!(
        crate::harness::ids(&second, "executed"),
        vec!["rows[n=10]", "rows[n=20]", "table[n=10]", "table[n=20]"]
    );
    assert_eq!(crate::harness::ids(&second, "cached"), vec!["lm"]);
}
