//! Parsing a pipeline file into a validated [`Pipeline`].
//!
//! The file is read with `toml_edit`, which keeps the span of every key and value,
//! so each structural error names its line and column. Kind-specific parameters
//! are checked later, per instance, by the kind itself (see `graph::plan`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use toml_edit::{Item, TableLike};

use super::cluster::{self, Placement, SlurmOptions};
use super::include::SweepFile;
use super::sweep::{Axis, Point};
use super::value::{from_edit, from_item};
use super::{Diagnostic, Source, Span, Sweep, SweepMode};
use crate::stages::{self, Kind};

/// Keys of a stage table that belong to the engine, not to the kind.
/// `timeout` is the engine's too: how long an instance may run is not part of what
/// it computes, so it stays out of the fingerprint (changing it re-runs nothing).
/// So are where it runs and what a cluster gives it (`super::cluster`).
/// `seeds = K` becomes a `seed` sweep axis (see [`Parser::seeds`]).
const ENGINE_KEYS: &[&str] = &[
    "kind",
    "inputs",
    "foreach",
    "sweep",
    "sweep_mode",
    "sweep_file",
    "timeout",
    "executor",
    "mem",
    "time",
    "gpus",
    "retries",
    "seeds",
];

/// A validated pipeline file.
#[derive(Debug)]
pub struct Pipeline {
    pub name: String,
    pub seed: u64,
    pub description: Option<String>,
    pub source: Source,
    /// Directory of the pipeline file; relative paths in parameters resolve here.
    pub base_dir: PathBuf,
    /// The file as a run names it (`pipeline_file` of kinds that take it):
    /// relative to the workspace once [`Pipeline::in_workspace`] placed it,
    /// else as given.
    pub shown_path: String,
    /// Stages in file order.
    pub stages: Vec<StageDef>,
    /// `[executor.slurm]`, defaults when absent.
    pub slurm: SlurmOptions,
}

/// One `[stages.<name>]` table.
#[derive(Debug)]
pub struct StageDef {
    pub name: String,
    /// The stage's header or key, for errors about the stage as a whole.
    pub span: Option<Span>,
    pub kind: &'static Kind,
    /// Stages whose outputs this stage reads, with where each is named.
    pub inputs: Vec<(String, Option<Span>)>,
    /// Inputs this stage runs once per instance of (instead of receiving them
    /// all), or once per value of some of their swept keys.
    pub foreach: Vec<Foreach>,
    /// The kind's parameters as written (sweeps not applied).
    pub params: toml::Table,
    /// Span of each parameter's key.
    pub param_spans: HashMap<String, Span>,
    pub sweep: Option<Sweep>,
    /// Sweeps included with `sweep_file`: their points follow the stage's own.
    pub sweep_files: Vec<SweepFile>,
    /// How long one instance may run before it fails with "timed out after ...".
    pub timeout: Option<std::time::Duration>,
    /// Where it runs and what it asks a cluster for.
    pub placement: Placement,
}

/// One `foreach` entry: `"stage"` (one instance per instance of the input) or
/// `"stage.key"` (one per distinct value of that swept key among its
/// instances; several entries of one stage combine their keys).
#[derive(Debug, Clone, PartialEq)]
pub struct Foreach {
    pub stage: String,
    /// The input's swept keys to map over; empty: its whole point.
    pub keys: Vec<String>,
    /// Where the entry is written, for errors about its keys.
    pub span: Option<Span>,
}

impl StageDef {
    /// The `foreach` entry naming `input`, if any.
    pub fn foreach_of(&self, input: &str) -> Option<&Foreach> {
        self.foreach.iter().find(|f| f.stage == input)
    }

    /// Best location for an error about parameter `key` (`"split.train"` points at
    /// `split`): its sweep values, its key, or the stage header.
    pub fn span_of(&self, key: Option<&str>) -> Option<Span> {
        let top = key.map(|k| k.split('.').next().unwrap_or(k));
        if let Some(top) = top {
            if let Some(axis) = self.swept(top) {
                return axis.span.clone();
            }
            if let Some(span) = self.param_spans.get(top) {
                return Some(span.clone());
            }
        }
        self.span.clone()
    }
}

impl StageDef {
    /// The stage's own sweep, then each included one.
    pub fn sweeps(&self) -> impl Iterator<Item = &Sweep> {
        self.sweep
            .iter()
            .chain(self.sweep_files.iter().map(|f| &f.sweep))
    }

    /// The axis of a swept parameter, in the first sweep that has it.
    pub fn swept(&self, key: &str) -> Option<&Axis> {
        self.sweeps().find_map(|s| s.axis(key))
    }

    /// Every sweep point, in order (None without any sweep).
    pub fn points(&self) -> Option<Vec<Point>> {
        if self.sweep.is_none() && self.sweep_files.is_empty() {
            return None;
        }
        Some(self.sweeps().flat_map(Sweep::points).collect())
    }
}

impl Pipeline {
    /// Reads and validates a pipeline file.
    pub fn load(path: &Path) -> Result<Pipeline, Box<Diagnostic>> {
        let bytes = std::fs::read(path).map_err(|e| {
            Box::new(Diagnostic {
                path: path.to_path_buf(),
                location: None,
                width: 1,
                line_text: String::new(),
                stage: None,
                message: format!("cannot read pipeline file: {e}"),
            })
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            // Point at the first bad byte, in the text with it replaced by U+FFFD.
            let at = e.utf8_error().valid_up_to();
            let byte = e.as_bytes()[at];
            let shown = Source::new(path, String::from_utf8_lossy(e.as_bytes()).into_owned());
            Box::new(Diagnostic::at(
                &shown,
                Some(at..at + char::REPLACEMENT_CHARACTER.len_utf8()),
                format!("the file is not valid UTF-8 (byte 0x{byte:02x}); pipeline files are UTF-8 text"),
            ))
        })?;
        Pipeline::parse(Source::new(path, text))
    }

    /// Validates a pipeline from its text.
    pub fn parse(source: Source) -> Result<Pipeline, Box<Diagnostic>> {
        Parser { source: &source }.pipeline().map(|mut p| {
            p.source = source.clone();
            p
        })
    }

    /// Names the file relative to the workspace `root` when it lies under it
    /// (what `scalepipe run` from the root takes), else by its absolute path.
    pub fn in_workspace(mut self, root: &Path) -> Pipeline {
        let path = self.source.path();
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        self.shown_path = absolute
            .strip_prefix(root)
            .unwrap_or(&absolute)
            .display()
            .to_string();
        self
    }

    /// A stage by name.
    pub fn stage(&self, name: &str) -> Option<&StageDef> {
        self.stages.iter().find(|s| s.name == name)
    }
}

pub(super) struct Parser<'a> {
    source: &'a Source,
}

type PResult<T> = std::result::Result<T, Box<Diagnostic>>;

/// Stage names with where each is written.
type NameList = Vec<(String, Option<Span>)>;

impl<'a> Parser<'a> {
    pub(super) fn new(source: &'a Source) -> Self {
        Parser { source }
    }

    pub(super) fn error(&self, span: Option<Span>, message: impl Into<String>) -> Box<Diagnostic> {
        Box::new(Diagnostic::at(self.source, span, message))
    }

    fn pipeline(&self) -> PResult<Pipeline> {
        let doc = toml_edit::ImDocument::parse(self.source.text())
            .map_err(|e| self.error(e.span(), syntax_message(e.message())))?;
        let root = doc.as_table();

        for (key, _) in root.iter() {
            if key != "pipeline" && key != "stages" && key != "executor" {
                return Err(self.error(
                    key_span(root, key),
                    format!("unknown top-level key `{key}` (expected `[pipeline]`, `[stages.<name>]` and `[executor.slurm]` tables)"),
                ));
            }
        }
        let slurm = match root.get("executor") {
            None => SlurmOptions::default(),
            Some(item) => {
                let table = item.as_table_like().ok_or_else(|| {
                    self.error(
                        item.span(),
                        "`executor` must be a table: `[executor.slurm]`",
                    )
                })?;
                cluster::executor_table(table).map_err(|(key, at, message)| {
                    let span = at
                        .and_then(|i| i.span())
                        .or_else(|| key.and_then(|k| key_span(table, k)))
                        .or_else(|| item.span());
                    self.error(span, message)
                })?
            }
        };

        let header = root
            .get("pipeline")
            .ok_or_else(|| self.error(Some(0..0), "missing `[pipeline]` table with a `name`"))?;
        let header = header
            .as_table_like()
            .ok_or_else(|| self.error(header.span(), "`pipeline` must be a table: `[pipeline]`"))?;
        let (name, seed, description) = self.header(header, key_span(root, "pipeline"))?;

        let stages_item = root.get("stages").ok_or_else(|| {
            self.error(
                Some(self.source.text().len()..self.source.text().len()),
                "the pipeline has no stages (expected at least one `[stages.<name>]` table)",
            )
        })?;
        let stage_tables = stages_item.as_table_like().ok_or_else(|| {
            self.error(
                stages_item.span(),
                "`stages` must be a table of `[stages.<name>]` tables",
            )
        })?;
        let mut stages = Vec::new();
        for (name, item) in stage_tables.iter() {
            stages.push(self.stage(stage_tables, name, item, seed)?);
        }
        if stages.is_empty() {
            return Err(self.error(
                key_span(root, "stages"),
                "the pipeline has no stages (expected at least one `[stages.<name>]` table)",
            ));
        }
        self.check_inputs(&stages)?;
        inherit_inputs(&mut stages);

        let base_dir = self
            .source
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Ok(Pipeline {
            name,
            seed,
            description,
            source: self.source.clone(),
            shown_path: self.source.path().display().to_string(),
            base_dir,
            stages,
            slurm,
        })
    }

    fn header(
        &self,
        table: &dyn TableLike,
        span: Option<Span>,
    ) -> PResult<(String, u64, Option<String>)> {
        let mut name = None;
        let mut seed = 0;
        let mut description = None;
        for (key, item) in table.iter() {
            let value = item.as_value();
            match key {
                "name" => {
                    let text = value.and_then(|v| v.as_str()).ok_or_else(|| {
                        self.error(item.span(), "`name` must be a string")
                    })?;
                    if !is_identifier(text) {
                        return Err(self.error(
                            item.span(),
                            format!("pipeline name `{text}` must be letters, digits, `_` or `-` (it names a directory)"),
                        ));
                    }
                    name = Some(text.to_string());
                }
                "seed" => {
                    seed = value
                        .and_then(|v| v.as_integer())
                        .filter(|s| *s >= 0)
                        .ok_or_else(|| {
                            self.error(item.span(), "`seed` must be a non-negative integer")
                        })? as u64;
                }
                "description" => {
                    let text = value.and_then(|v| v.as_str()).ok_or_else(|| {
                        self.error(item.span(), "`description` must be a string")
                    })?;
                    description = Some(text.to_string());
                }
                other => {
                    return Err(self.error(
                        key_span(table, other),
                        format!("unknown key `{other}` in `[pipeline]` (expected `name`, `seed` or `description`)"),
                    ))
                }
            }
        }
        let name = name.ok_or_else(|| self.error(span, "`[pipeline]` needs a `name`"))?;
        Ok((name, seed, description))
    }

    fn stage(
        &self,
        stages: &dyn TableLike,
        name: &str,
        item: &Item,
        pipeline_seed: u64,
    ) -> PResult<StageDef> {
        let span = key_span(stages, name).or_else(|| item.span());
        let in_stage = |d: Box<Diagnostic>| Box::new(d.in_stage(name));
        if !is_identifier(name) {
            return Err(in_stage(
                self.error(span, "stage names must be letters, digits, `_` or `-`"),
            ));
        }
        let table = item.as_table_like().ok_or_else(|| {
            in_stage(self.error(
                item.span().or(span.clone()),
                "a stage must be a table: `[stages.<name>]` with a `kind`",
            ))
        })?;

        let kind_item = table.get("kind").ok_or_else(|| {
            in_stage(self.error(
                span.clone(),
                "missing `kind` (for example `kind = \"command\"`)",
            ))
        })?;
        let kind_name = kind_item
            .as_str()
            .ok_or_else(|| in_stage(self.error(kind_item.span(), "`kind` must be a string")))?;
        let kind = stages::kind(kind_name).ok_or_else(|| {
            let known: Vec<&str> = stages::kinds().iter().map(|k| k.name).collect();
            in_stage(self.error(
                kind_item.span(),
                format!(
                    "unknown kind `{kind_name}` (expected one of: {})",
                    known.join(", ")
                ),
            ))
        })?;

        let inputs = self
            .string_list(table, "inputs")
            .map_err(in_stage)?
            .unwrap_or_default();
        let foreach = self
            .string_list(table, "foreach")
            .map_err(in_stage)?
            .unwrap_or_default();
        let mut mapped: Vec<Foreach> = Vec::new();
        for (f, f_span) in &foreach {
            let is_input = |name: &str| inputs.iter().any(|(i, _)| i == name);
            // A whole input, else `input.key` (split at the last dot, so a
            // stage name holding a dot still names itself).
            let (stage, key) = if is_input(f) {
                (f.as_str(), None)
            } else {
                match f.rsplit_once('.') {
                    Some((stage, key)) if is_input(stage) && !key.is_empty() => (stage, Some(key)),
                    _ => {
                        return Err(in_stage(self.error(
                            f_span.clone(),
                            format!("`foreach` names `{f}`, which is not in `inputs` (name an input stage, or `stage.key` for one of its swept keys)"),
                        )))
                    }
                }
            };
            match mapped.iter_mut().find(|m| m.stage == stage) {
                Some(m) => {
                    if key.is_none() || m.keys.is_empty() {
                        return Err(in_stage(self.error(
                            f_span.clone(),
                            format!("`foreach` names `{stage}` twice: map over the whole stage or over some of its keys, not both"),
                        )));
                    }
                    m.keys.extend(key.map(str::to_string));
                }
                None => mapped.push(Foreach {
                    stage: stage.to_string(),
                    keys: key.map(str::to_string).into_iter().collect(),
                    span: f_span.clone(),
                }),
            }
        }

        let mode = match table.get("sweep_mode") {
            None => SweepMode::Grid,
            Some(item) => match item.as_str() {
                Some("grid") => SweepMode::Grid,
                Some("zip") => SweepMode::Zip,
                _ => {
                    return Err(in_stage(
                        self.error(item.span(), "`sweep_mode` must be \"grid\" or \"zip\""),
                    ))
                }
            },
        };
        let mut sweep = match table.get("sweep") {
            None => None,
            Some(item) => Some(
                self.sweep(item, mode, key_span(table, "sweep"))
                    .map_err(in_stage)?,
            ),
        };

        let base_dir = self
            .source
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut sweep_files = match table.get("sweep_file") {
            None => Vec::new(),
            Some(item) => self.sweep_files(item, &base_dir).map_err(in_stage)?,
        };
        // Seeds cross every sweep point, included ones too; a stage whose
        // points all come from files gets no unswept instance from them.
        if let Some(item) = table.get("seeds") {
            let axis = self
                .seeds(table, item, kind, sweep.as_ref(), pipeline_seed)
                .map_err(in_stage)?;
            for file in &mut sweep_files {
                file.sweep.seeds = Some(axis.clone());
            }
            if sweep.is_some() || sweep_files.is_empty() {
                sweep
                    .get_or_insert(Sweep {
                        mode,
                        axes: Vec::new(),
                        seeds: None,
                    })
                    .seeds = Some(axis);
            }
        }

        let timeout = match table.get("timeout") {
            None => None,
            Some(item) => Some(duration(item).ok_or_else(|| {
                in_stage(self.error(
                    item.span().or(key_span(table, "timeout")),
                    "`timeout` must be a duration such as \"30s\", \"5m\", \"2h\" or \"500ms\", or a number of seconds > 0",
                ))
            })?),
        };

        let placement = cluster::placement(table).map_err(|(item, message)| {
            in_stage(self.error(item.span().or(span.clone()), message))
        })?;

        let mut params = toml::Table::new();
        let mut param_spans = HashMap::new();
        for (key, item) in table.iter() {
            if ENGINE_KEYS.contains(&key) {
                continue;
            }
            // With `seeds`, the stage's seed is the replicates' base, not a parameter.
            if key == "seed" && table.contains_key("seeds") {
                continue;
            }
            if let Some(value) = from_item(item) {
                params.insert(key.to_string(), value);
            }
            if let Some(s) = key_span(table, key) {
                param_spans.insert(key.to_string(), s);
            }
            if let Some(axis) = sweep.as_ref().and_then(|s| s.axis(key)) {
                return Err(in_stage(self.error(
                    axis.span.clone(),
                    format!("`{key}` is set in the stage and swept; keep one of the two"),
                )));
            }
            if let Some(file) = sweep_files.iter().find(|f| f.sweep.axis(key).is_some()) {
                return Err(in_stage(self.error(
                    key_span(table, key),
                    format!(
                        "`{key}` is set in the stage and swept in `{}`; keep one of the two",
                        file.name
                    ),
                )));
            }
        }

        Ok(StageDef {
            name: name.to_string(),
            span,
            kind,
            inputs,
            foreach: mapped,
            params,
            param_spans,
            sweep,
            sweep_files,
            timeout,
            placement,
        })
    }

    /// A list of stage names such as `inputs = ["data", "train"]`.
    fn string_list(&self, table: &dyn TableLike, key: &str) -> PResult<Option<NameList>> {
        let Some(item) = table.get(key) else {
            return Ok(None);
        };
        let expected = format!("`{key}` must be a list of stage names, like `{key} = [\"data\"]`");
        let array = item
            .as_array()
            .ok_or_else(|| self.error(item.span(), expected.clone()))?;
        let mut names = Vec::new();
        let mut seen = HashSet::new();
        for value in array.iter() {
            let name = value
                .as_str()
                .ok_or_else(|| self.error(value.span(), expected.clone()))?;
            if !seen.insert(name.to_string()) {
                return Err(
                    self.error(value.span(), format!("`{name}` is listed twice in `{key}`"))
                );
            }
            names.push((name.to_string(), value.span()));
        }
        Ok(Some(names))
    }

    /// `seeds = K`: K replicates of every instance, as a `seed` axis whose values
    /// are the stage's seed (its `seed`, else the pipeline's) plus 0 .. K-1. So
    /// the first replicate is the unreplicated instance (same fingerprint, a
    /// cache hit), and raising K later runs only the new replicates.
    fn seeds(
        &self,
        table: &dyn TableLike,
        item: &Item,
        kind: &Kind,
        sweep: Option<&Sweep>,
        pipeline_seed: u64,
    ) -> PResult<Axis> {
        let span = item.span().or(key_span(table, "seeds"));
        let k = item.as_integer().filter(|k| *k >= 1).ok_or_else(|| {
            self.error(
                span.clone(),
                "`seeds` must be an integer >= 1 (the number of seed replicates)",
            )
        })?;
        if !kind.takes_seed {
            return Err(self.error(
                span,
                format!(
                    "`seeds` replicates a stage over seeds, but kind `{}` takes no seed",
                    kind.name
                ),
            ));
        }
        if let Some(axis) = sweep.and_then(|s| s.axis("seed")) {
            return Err(self.error(
                axis.span.clone(),
                "`seed` is swept and `seeds` is set; keep one of the two",
            ));
        }
        let base = match table.get("seed") {
            None => pipeline_seed,
            Some(seed) => seed
                .as_integer()
                .and_then(|s| u64::try_from(s).ok())
                .ok_or_else(|| {
                    self.error(
                        seed.span().or(key_span(table, "seed")),
                        "`seed` must be a non-negative integer",
                    )
                })?,
        };
        let values = (0..k as u64)
            .map(|i| {
                base.checked_add(i)
                    .and_then(|s| i64::try_from(s).ok())
                    .map(toml::Value::Integer)
                    .ok_or_else(|| {
                        self.error(span.clone(), "`seed` + `seeds` overflows a 63-bit seed")
                    })
            })
            .collect::<PResult<Vec<_>>>()?;
        Ok(Axis {
            key: "seed".into(),
            values,
            span,
        })
    }

    pub(super) fn sweep(&self, item: &Item, mode: SweepMode, span: Option<Span>) -> PResult<Sweep> {
        let mut value_spans: Vec<Vec<Option<Span>>> = Vec::new();
        let table = item.as_table_like().ok_or_else(|| {
            self.error(
                item.span().or(span.clone()),
                "`sweep` must be a table of lists, like `[stages.train.sweep]` with `width = [64, 128]`",
            )
        })?;
        let mut axes = Vec::new();
        for (key, value) in table.iter() {
            let key_sp = key_span(table, key);
            if ENGINE_KEYS.contains(&key) {
                return Err(self.error(key_sp, format!("`{key}` cannot be swept")));
            }
            let array = value.as_array().ok_or_else(|| {
                self.error(
                    value.span().or(key_sp.clone()),
                    format!("sweep values of `{key}` must be a list, like `{key} = [1, 2, 3]`"),
                )
            })?;
            if array.is_empty() {
                return Err(self.error(
                    value.span().or(key_sp.clone()),
                    format!("the sweep over `{key}` is empty (expected at least one value)"),
                ));
            }
            let values: Vec<toml::Value> = array.iter().map(from_edit).collect();
            for (v, raw) in values.iter().zip(array.iter()) {
                if matches!(v, toml::Value::Array(_) | toml::Value::Table(_)) {
                    return Err(self.error(
                        raw.span(),
                        format!("sweep values of `{key}` must be strings, numbers or booleans"),
                    ));
                }
            }
            // A zip sweep may repeat a value on one axis (`n = [1e7, 1e7]`,
            // `d = [1e9, 2e9]`); its points are checked whole below.
            value_spans.push(array.iter().map(|v| v.span()).collect::<Vec<_>>());
            if let (SweepMode::Grid, Some(dup)) = (mode, first_repeat(&values)) {
                let shown = super::display_value(&values[dup]);
                return Err(self.error(
                    array.get(dup).and_then(|v| v.span()),
                    format!("the sweep over `{key}` lists `{shown}` twice"),
                ));
            }
            axes.push(Axis {
                key: key.to_string(),
                values,
                span: value.span().or(key_sp),
            });
        }
        if axes.is_empty() {
            return Err(self.error(
                item.span().or(span),
                "the sweep is empty (expected at least one swept parameter)",
            ));
        }
        if mode == SweepMode::Zip {
            let first = &axes[0];
            for axis in &axes[1..] {
                if axis.values.len() != first.values.len() {
                    return Err(self.error(
                        axis.span.clone(),
                        format!(
                            "a zip sweep needs lists of equal length: `{}` has {} values, `{}` has {}",
                            axis.key,
                            axis.values.len(),
                            first.key,
                            first.values.len()
                        ),
                    ));
                }
            }
            let points: Vec<toml::Value> = (0..first.values.len())
                .map(|i| {
                    let shown: Vec<String> = axes
                        .iter()
                        .map(|a| super::display_value(&a.values[i]))
                        .collect();
                    toml::Value::String(shown.join(","))
                })
                .collect();
            if let Some(dup) = first_repeat(&points) {
                let shown: Vec<String> = axes
                    .iter()
                    .map(|a| format!("{} = {}", a.key, super::display_value(&a.values[dup])))
                    .collect();
                return Err(self.error(
                    value_spans[0][dup].clone(),
                    format!("the zip sweep lists the point ({}) twice", shown.join(", ")),
                ));
            }
        }
        Ok(Sweep {
            mode,
            axes,
            seeds: None,
        })
    }

    fn check_inputs(&self, stages: &[StageDef]) -> PResult<()> {
        let names: HashSet<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        for stage in stages {
            for (input, span) in &stage.inputs {
                if !names.contains(input.as_str()) {
                    let mut known: Vec<&str> = names.iter().copied().collect();
                    known.sort();
                    return Err(Box::new(
                        self.error(
                            span.clone(),
                            format!(
                                "input `{input}` is not a stage of this pipeline (stages: {})",
                                known.join(", ")
                            ),
                        )
                        .in_stage(&stage.name),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Adds to each stage the inputs it inherits from its inputs of the kind its
/// kind names in [`Kind::inherits_inputs_of`] (an `eval` of `train` also reads
/// the dataset `train` read), located where the lending input is named. Inputs
/// the stage already lists are not added twice.
fn inherit_inputs(stages: &mut [StageDef]) {
    for s in 0..stages.len() {
        let Some(lender_kind) = stages[s].kind.inherits_inputs_of else {
            continue;
        };
        let mut added: Vec<(String, Option<Span>)> = Vec::new();
        for (input, span) in &stages[s].inputs {
            let Some(lender) = stages.iter().find(|t| &t.name == input) else {
                continue;
            };
            if lender.kind.name != lender_kind {
                continue;
            }
            for (inherited, _) in &lender.inputs {
                let listed = stages[s].inputs.iter().any(|(i, _)| i == inherited)
                    || added.iter().any(|(i, _)| i == inherited);
                if !listed {
                    added.push((inherited.clone(), span.clone()));
                }
            }
        }
        stages[s].inputs.extend(added);
    }
}

/// Index of the first value that repeats an earlier one, as instance ids show
/// them (`1` and `"1"` would give the same id, so they repeat).
///
/// Sweeps of integers or of strings, the common kinds, are compared as they are
/// rather than through a formatted string each: a sweep can hold a million values.
fn first_repeat(values: &[toml::Value]) -> Option<usize> {
    fn first<K: std::hash::Hash + Eq>(keys: impl Iterator<Item = K>, n: usize) -> Option<usize> {
        let mut seen = HashSet::with_capacity(n);
        for (i, key) in keys.enumerate() {
            if !seen.insert(key) {
                return Some(i);
            }
        }
        None
    }
    let n = values.len();
    if values.iter().all(|v| v.is_integer()) {
        first(values.iter().filter_map(toml::Value::as_integer), n)
    } else if values.iter().all(|v| v.is_str()) {
        first(values.iter().filter_map(toml::Value::as_str), n)
    } else {
        first(values.iter().map(super::display_value), n)
    }
}

/// Span of a key in a table.
fn key_span(table: &dyn TableLike, key: &str) -> Option<Span> {
    table.key(key).and_then(|k| k.span())
}

/// Names usable as directory names and in instance ids.
fn is_identifier(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// toml_edit's messages span several lines; keep the first, which says what is wrong.
pub(super) fn syntax_message(message: &str) -> String {
    let first = message.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let expected = message
        .lines()
        .find(|l| l.trim_start().starts_with("expected"))
        .map(str::trim);
    match expected {
        Some(e) if e != first => format!("invalid TOML: {first}, {e}"),
        _ => format!("invalid TOML: {first}"),
    }
}

/// A duration (a stage's `timeout`, `[executor.slurm] poll`): seconds as a
/// number, or a string with a unit (`ms`, `s`, `m`, `h`). `None` when it is not
/// a positive, finite duration.
pub(super) fn duration(item: &Item) -> Option<std::time::Duration> {
    let seconds = match item.as_value()? {
        toml_edit::Value::Integer(n) => *n.value() as f64,
        toml_edit::Value::Float(f) => *f.value(),
        toml_edit::Value::String(s) => {
            let text = s.value().trim();
            let split = text
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(text.len());
            let (number, unit) = text.split_at(split);
            let number: f64 = number.parse().ok()?;
            let scale = match unit.trim() {
                "ms" => 1e-3,
                "s" | "" => 1.0,
                "m" | "min" => 60.0,
                "h" => 3600.0,
                _ => return None,
            };
            number * scale
        }
        _ => return None,
    };
    (seconds.is_finite() && seconds > 0.0 && seconds < 1e9)
        .then(|| std::time::Duration::from_secs_f64(seconds))
}
