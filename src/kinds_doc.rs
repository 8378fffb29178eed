//! The parameter reference of every stage kind (`scalepipe kinds`, `docs/kinds.md`).
//!
//! Each kind file keeps a `PARAMS` table of [`ParamDoc`] beside its parameter
//! struct; this module only lists and renders them. A test asks every kind's own
//! parser which keys it accepts (serde names them when it rejects an unknown key)
//! and fails when a table documents a key the parser refuses or misses one it
//! accepts, so the reference cannot drift from the code.

use std::fmt::Write;

use crate::stages::{self, Kind};

/// One parameter of a kind.
#[derive(Debug, Clone, Copy)]
pub struct ParamDoc {
    pub key: &'static str,
    /// What is written: `integer`, `string`, `"byte" | "char"`, ...
    pub ty: &'static str,
    /// The default, or `required`.
    pub default: &'static str,
    pub doc: &'static str,
    /// The parameter applies only in this case (e.g. `model = "mlp"`).
    pub only: Option<&'static str>,
}

impl ParamDoc {
    pub const fn new(
        key: &'static str,
        ty: &'static str,
        default: &'static str,
        doc: &'static str,
    ) -> ParamDoc {
        ParamDoc {
            key,
            ty,
            default,
            doc,
            only: None,
        }
    }

    /// The same parameter, documented as applying only when `case` holds.
    pub const fn only(self, case: &'static str) -> ParamDoc {
        ParamDoc {
            only: Some(case),
            ..self
        }
    }
}

/// What the reference says about one kind.
pub struct KindDoc {
    pub kind: &'static Kind,
    pub summary: &'static str,
    /// What N and D mean for the runs this kind produces or trains.
    pub n_and_d: Option<&'static str>,
    /// The kind's parameters; kinds that share most of theirs (`dataset.csv`
    /// and `dataset.parquet`) list a shared table and their own rows.
    pub params: Vec<ParamDoc>,
}

/// The reference, in the registry's order.
pub fn kind_docs() -> Vec<KindDoc> {
    use stages::dataset::{csv, idx, markov_text, parquet, prefix, teacher, text};
    let doc = |name: &str| stages::kind(name).expect("registered kind");
    vec![
        KindDoc {
            kind: doc("command"),
            summary: "Any program, run with `sh -c` in a fresh output directory and cached like the rest. Every other scalar parameter is substituted for `{name}` in `cmd` and exported as `SCALEPIPE_PARAM_<NAME>`; `SCALEPIPE_OUT` is the output directory, `SCALEPIPE_INPUTS` a JSON file listing the inputs.",
            n_and_d: None,
            params: stages::command::PARAMS.to_vec(),
        },
        KindDoc {
            kind: doc("dataset.teacher"),
            summary: "x ~ N(0, I) and targets from a random teacher MLP: regression with known E = noise_std^2, or classification.",
            n_and_d: Some("D = training examples (`n`)."),
            params: teacher::PARAMS.to_vec(),
        },
        KindDoc {
            kind: doc("dataset.markov_text"),
            summary: "A Zipfian Markov-chain language whose exact entropy rate is the reference E.",
            n_and_d: Some("D = training tokens (`tokens`)."),
            params: markov_text::PARAMS.to_vec(),
        },
        KindDoc {
            kind: doc("dataset.csv"),
            summary: "A CSV table read with Polars: numeric feature columns, or one text column tokenised for text classification.",
            n_and_d: Some("D = training examples (rows, `n`)."),
            params: csv::params(),
        },
        KindDoc {
            kind: doc("dataset.parquet"),
            summary: "A Parquet table, as `dataset.csv`.",
            n_and_d: Some("D = training examples (rows, `n`)."),
            params: parquet::PARAMS.to_vec(),
        },
        KindDoc {
            kind: doc("dataset.text"),
            summary: "A folder (or one file) of text as a token stream for language modelling. Split sizes are tokens; held-out sets default to 10% each, at most 250,000 tokens.",
            n_and_d: Some("D = training tokens (`tokens`)."),
            params: text::PARAMS.to_vec(),
        },
        KindDoc {
            kind: doc("dataset.prefix"),
            summary: "The first `tokens` training tokens of one token dataset (a `dataset.text` or `dataset.markov_text` stage without a `tokens` sweep), with its validation and test sets linked: sweep D here and the corpus is read and tokenised once.",
            n_and_d: Some("D = training tokens (`tokens`)."),
            params: prefix::PARAMS.to_vec(),
        },
        KindDoc {
            kind: doc("dataset.idx"),
            summary: "MNIST-style IDX image and label files, scaled to [0, 1].",
            n_and_d: Some("D = training examples (`n`)."),
            params: idx::PARAMS.to_vec(),
        },
        KindDoc {
            kind: doc("train"),
            summary: "Trains one model per input dataset instance on dfdx: AdamW, warmup + cosine or warmup-stable-decay (WSD) schedule, gradient clipping; writes metrics.json, loss_curve.csv and a checkpoint (WSD runs also a stable-phase checkpoint, which runs of other lengths continue from). Give exactly one budget: `steps`, `epochs`, `tokens` or `examples`.",
            n_and_d: Some("N = trainable parameters (`n_params` in metrics.json; transformers also record `n_params_non_embedding`). D = units processed in training = steps x batch_size x units per row: examples for `mlp` and `text_classifier` (one row is one example), tokens for `transformer` (one row is `context` tokens). D is what the model saw, so with `epochs` > 1 it counts repeats."),
            params: stages::train::PARAMS.to_vec(),
        },
        KindDoc {
            kind: doc("eval"),
            summary: "Held-out loss (MSE, or cross-entropy in nats) and accuracy of one trained model, joined with its N, D and FLOPs. Lists a train stage; receives that train's dataset too.",
            n_and_d: Some("N and D are copied from the train instance."),
            params: stages::eval::PARAMS.to_vec(),
        },
        KindDoc {
            kind: doc("fit"),
            summary: "Power laws fitted with Huber on log loss by multistart L-BFGS, from eval/train instances or a `table` of runs.",
            n_and_d: Some("Reads N and D from the runs (or the table's columns)."),
            params: stages::fit::PARAMS.to_vec(),
        },
        KindDoc {
            kind: doc("report"),
            summary: "Figures (SVG, PNG) and a Markdown and HTML report of the fits and runs it lists as inputs.",
            n_and_d: None,
            params: stages::report::PARAMS.to_vec(),
        },
        KindDoc {
            kind: doc("simulate"),
            summary: "One simulated run per (n, d) sweep point: a loss drawn from a known law L = E + A/N^alpha + B/D^beta with multiplicative noise, written as the metrics.json a fit reads. The study's true compute-optimal N* is then known; a design can be rehearsed before spending compute.",
            n_and_d: Some("N and D are the `n` and `d` parameters; FLOPs = 6ND."),
            params: stages::simulate::PARAMS.to_vec(),
        },
        KindDoc {
            kind: doc("design"),
            summary: "Proposes the k runs that most narrow the bootstrap intervals of the compute-optimal N* and of the predicted loss at `budget`, per FLOP, within `spend`. Reads one chinchilla fit with a bootstrap; writes design.json and proposal.toml, a sweep fragment to include with `sweep_file`. `scalepipe suggest FILE` prints it in words.",
            n_and_d: Some("Candidates are (N, D) pairs; a run costs 6ND FLOPs."),
            params: stages::design::PARAMS.to_vec(),
        },
    ]
}

/// Plain text for the terminal.
pub fn text() -> String {
    let mut out = String::new();
    for k in kind_docs() {
        let _ = writeln!(
            out,
            "{} (version {})\n  {}",
            k.kind.name, k.kind.version, k.summary
        );
        if let Some(nd) = k.n_and_d {
            let _ = writeln!(out, "  {nd}");
        }
        for p in &k.params {
            let only = p.only.map(|o| format!(" [{o}]")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<18} {} = {}{only}\n      {}",
                p.key, p.ty, p.default, p.doc
            );
        }
        out.push('\n');
    }
    out
}

/// `docs/kinds.md`.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Stage kinds\n\n\
         Generated by `scalepipe kinds --markdown` from the tables beside each kind's\n\
         parameters (a test fails when this file or a table is out of date). Every\n\
         kind that takes a `seed` gets the pipeline's seed unless the stage sets one,\n\
         and accepts the engine key `seeds = K`: K replicate instances with the seeds\n\
         `seed`, `seed` + 1, ..., `seed` + K - 1.\n",
    );
    for k in kind_docs() {
        let _ = write!(
            out,
            "\n## `{}`\n\n{}\n\n",
            k.kind.name,
            k.summary.replace('|', "\\|")
        );
        if let Some(nd) = k.n_and_d {
            let _ = write!(out, "{nd}\n\n");
        }
        out.push_str("| parameter | type | default | meaning |\n|---|---|---|---|\n");
        for p in &k.params {
            let only = p
                .only
                .map(|o| format!(" Only with {o}."))
                .unwrap_or_default();
            let cell = |s: &str| s.replace('|', "\\|");
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {}{} |",
                p.key,
                cell(p.ty),
                cell(p.default),
                cell(p.doc),
                cell(&only)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    use crate::stages::ConfigureContext;

    /// The keys a kind's parser accepts, read from its "unknown field" error:
    /// `unknown field `__probe__`, expected one of `a`, `b``.
    fn accepted(kind: &Kind, base: &str) -> BTreeSet<String> {
        let mut table: toml::Table = toml::from_str(base).unwrap();
        table.insert("__probe__".into(), toml::Value::Integer(1));
        let cx = ConfigureContext {
            base_dir: Path::new("."),
            input_kinds: &[],
        };
        let err = match (kind.configure)(&table, &cx) {
            Ok(_) => panic!("{} accepted an unknown key", kind.name),
            Err(e) => e.message,
        };
        let list = err
            .split_once("expected")
            .unwrap_or_else(|| panic!("{}: no key list in {err:?}", kind.name))
            .1;
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    fn documented(k: &KindDoc, case: Option<&str>) -> BTreeSet<String> {
        k.params
            .iter()
            .filter(|p| case.is_none() || p.only.is_none() || p.only == case)
            .map(|p| p.key.to_string())
            .collect()
    }

    #[test]
    fn every_kind_is_documented_once() {
        let documented: Vec<&str> = kind_docs().iter().map(|k| k.kind.name).collect();
        let registered: Vec<&str> = stages::kinds().iter().map(|k| k.name).collect();
        assert_eq!(documented, registered);
        for k in kind_docs() {
            let mut keys: Vec<(&str, Option<&str>)> =
                k.params.iter().map(|p| (p.key, p.only)).collect();
            let all = keys.len();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), all, "{} documents a key twice", k.kind.name);
        }
    }

    #[test]
    fn tables_list_exactly_the_keys_each_parser_accepts() {
        for k in kind_docs() {
            match k.kind.name {
                // Takes any scalar; its own keys are checked by name below.
                "command" => {
                    let keys = documented(&k, None);
                    let own: BTreeSet<String> = crate::stages::command::OWN_KEYS
                        .iter()
                        .map(|s| s.to_string())
                        .collect();
                    assert_eq!(keys, own);
                }
                "train" => {
                    let run: BTreeSet<String> = crate::stages::train::RUN_KEYS
                        .iter()
                        .map(|s| s.to_string())
                        .collect();
                    for family in ["mlp", "transformer", "text_classifier"] {
                        let case = format!("model = \"{family}\"");
                        let mut keys = accepted(k.kind, &case);
                        keys.extend(run.iter().cloned());
                        keys.insert("model".into());
                        assert_eq!(
                            documented(&k, Some(case.as_str())),
                            keys,
                            "train with {case}"
                        );
                    }
                }
                name => {
                    let mut keys = accepted(k.kind, "");
                    if name == "dataset.parquet" {
                        // Parsed with the CSV keys, then refused with a clear message.
                        keys.remove("separator");
                    }
                    assert_eq!(documented(&k, None), keys, "{name}");
                }
            }
        }
    }

    #[test]
    fn every_parameter_has_a_type_default_and_meaning() {
        for k in kind_docs() {
            for p in &k.params {
                assert!(
                    !p.ty.is_empty() && !p.default.is_empty() && !p.doc.is_empty(),
                    "{}.{}",
                    k.kind.name,
                    p.key
                );
            }
        }
    }
}
