//! The plan: every stage instance of a pipeline, configured and fingerprinted,
//! in a petgraph DAG.
//!
//! Expansion rules. Each instance has a *point*: its own sweep values plus the
//! points of the inputs it runs once per (`foreach`, which `train` and `eval` do
//! for all their inputs by default). An instance reads, from each input stage,
//! every instance whose point agrees with its own on the keys both share. So a
//! stage with no sweep receives all instances of a swept input (fan-in), and a
//! stage swept over the same keys as its input is matched point to point.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::digest::hash_file;
use crate::pipeline::{
    canonical_json_text, write_display_value, Diagnostic, Pipeline, Point, StageDef,
};
use crate::stages::{ConfigureContext, Job, Kind, Resources};
use crate::store::{CacheKey, CanonicalJson, FileHash};

/// One configured stage instance.
///
/// Kept small, because a plan holds one per sweep point (a million for the
/// largest benchmarked sweep): the resolved parameters are not stored but
/// rebuilt by [`Plan::params`] when the instance runs, and the stage name is
/// shared by all instances of a stage.
pub struct Instance {
    /// Readable id, e.g. `train[seed=0,width=64]`.
    pub id: String,
    /// Index of the instance's stage in the pipeline.
    pub stage_index: usize,
    pub stage_name: Arc<str>,
    pub kind: &'static Kind,
    pub point: Point,
    /// Indices of the input instances, in input order.
    pub inputs: Vec<usize>,
    pub job: Box<dyn Job>,
    pub resources: Resources,
    pub key: CacheKey,
    pub fingerprint: String,
    /// Set for jobs with a [`crate::stages::Job::prefix`].
    pub prefix: Option<Box<PrefixLink>>,
}

/// An instance's place among the instances of its stage that share a prefix
/// (a WSD run's stable phase): they run shortest first, one after another,
/// so each can continue the previous one's work. The order is not an input:
/// it is outside fingerprints, and a failure does not skip the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixLink {
    /// Fingerprint of the prefix: the kind, the prefix parameters, the inputs
    /// and files. The store indexes committed entries by it.
    pub fingerprint: String,
    pub length: f64,
    /// The instance that runs before this one.
    pub after: Option<usize>,
    /// The instance that runs after this one.
    pub next: Option<usize>,
}

/// A pipeline expanded into instances.
pub struct Plan {
    pub pipeline: Pipeline,
    /// Instances in a dependency order (inputs before consumers).
    pub instances: Vec<Instance>,
    /// Edges from each input instance to its consumers.
    pub graph: DiGraph<usize, ()>,
}

impl Plan {
    /// Expands, configures and fingerprints every instance of a pipeline.
    pub fn build(pipeline: Pipeline) -> Result<Plan, Box<Diagnostic>> {
        let order = stage_order(&pipeline)?;
        let mut builder = Builder {
            pipeline: &pipeline,
            instances: Vec::new(),
            by_stage: vec![Vec::new(); pipeline.stages.len()],
            file_hashes: HashMap::new(),
        };
        for s in order {
            builder.expand(s)?;
        }
        let mut instances = builder.instances;
        chain_prefixes(&mut instances);
        let mut graph = DiGraph::with_capacity(instances.len(), instances.len());
        for i in 0..instances.len() {
            graph.add_node(i);
        }
        for (i, inst) in instances.iter().enumerate() {
            for &input in &inst.inputs {
                graph.add_edge(NodeIndex::new(input), NodeIndex::new(i), ());
            }
        }
        Ok(Plan {
            pipeline,
            instances,
            graph,
        })
    }

    /// Resolved parameters of instance `i` (sweep values and seed applied): what
    /// its kind was configured with and what its consumers see of it.
    pub fn params(&self, i: usize) -> toml::Table {
        let inst = &self.instances[i];
        resolve_params(&self.pipeline, inst.stage_index, &inst.point)
    }

    /// Indices of the instances that read instance `i`'s outputs.
    pub fn consumers(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.graph
            .neighbors_directed(NodeIndex::new(i), petgraph::Direction::Outgoing)
            .map(|n| n.index())
    }
}

/// Links the instances of each stage that share a prefix fingerprint, shortest
/// first (ties in plan order).
fn chain_prefixes(instances: &mut [Instance]) {
    let mut groups: HashMap<(usize, String), Vec<usize>> = HashMap::new();
    for (i, inst) in instances.iter().enumerate() {
        if let Some(link) = &inst.prefix {
            groups
                .entry((inst.stage_index, link.fingerprint.clone()))
                .or_default()
                .push(i);
        }
    }
    for mut members in groups.into_values() {
        let length = |i: usize| instances[i].prefix.as_ref().map_or(0.0, |l| l.length);
        members.sort_by(|&a, &b| length(a).total_cmp(&length(b)).then(a.cmp(&b)));
        for pair in members.windows(2) {
            let (first, second) = (pair[0], pair[1]);
            if let Some(link) = instances[first].prefix.as_mut() {
                link.next = Some(second);
            }
            if let Some(link) = instances[second].prefix.as_mut() {
                link.after = Some(first);
            }
        }
    }
}

/// Orders stages so inputs come first; a cycle is an error naming its stages.
fn stage_order(pipeline: &Pipeline) -> Result<Vec<usize>, Box<Diagnostic>> {
    let index: HashMap<&str, usize> = pipeline
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut graph = DiGraph::<usize, ()>::new();
    let nodes: Vec<NodeIndex> = (0..pipeline.stages.len())
        .map(|i| graph.add_node(i))
        .collect();
    for (i, stage) in pipeline.stages.iter().enumerate() {
        for (input, _) in &stage.inputs {
            graph.add_edge(nodes[index[input.as_str()]], nodes[i], ());
        }
    }
    match petgraph::algo::toposort(&graph, None) {
        Ok(_) => Ok(file_order_toposort(pipeline, &index)),
        Err(_) => {
            // tarjan_scc gives strongly connected components; a cycle is one with
            // more than one stage, or a stage that reads itself.
            let cycle = tarjan_scc(&graph)
                .into_iter()
                .find(|scc| scc.len() > 1 || graph.contains_edge(scc[0], scc[0]))
                .expect("toposort failed, so there is a cycle");
            let members: BTreeSet<usize> = cycle.iter().map(|n| graph[*n]).collect();
            let path = cycle_path(pipeline, &members);
            let first = &pipeline.stages[path[0]];
            let next = &pipeline.stages[path[1 % path.len()]].name;
            // Point at the stage that names the next one on the cycle as input.
            let consumer = &pipeline.stages[path[1 % path.len()]];
            let span = consumer
                .inputs
                .iter()
                .find(|(name, _)| *name == first.name)
                .and_then(|(_, span)| span.clone())
                .or_else(|| consumer.span.clone());
            let names: Vec<&str> = path
                .iter()
                .chain(std::iter::once(&path[0]))
                .map(|&i| pipeline.stages[i].name.as_str())
                .collect();
            Err(Box::new(
                Diagnostic::at(
                    &pipeline.source,
                    span,
                    format!("the stages form a cycle: {}", names.join(" -> ")),
                )
                .in_stage(next),
            ))
        }
    }
}

/// A dependency order that keeps stages in file order where it can, so runs
/// start stages in the order people wrote them.
fn file_order_toposort(pipeline: &Pipeline, index: &HashMap<&str, usize>) -> Vec<usize> {
    let n = pipeline.stages.len();
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = (0..n)
            .find(|&i| {
                !placed[i]
                    && pipeline.stages[i]
                        .inputs
                        .iter()
                        .all(|(name, _)| placed[index[name.as_str()]])
            })
            .expect("the graph is acyclic");
        placed[next] = true;
        order.push(next);
    }
    order
}

/// Walks one cycle through `members`, following input -> consumer edges.
fn cycle_path(pipeline: &Pipeline, members: &BTreeSet<usize>) -> Vec<usize> {
    let start = *members.iter().next().expect("cycle has members");
    let mut path = vec![start];
    let mut current = start;
    loop {
        let name = &pipeline.stages[current].name;
        let next = members
            .iter()
            .copied()
            .find(|&m| pipeline.stages[m].inputs.iter().any(|(i, _)| i == name))
            .expect("every stage on a cycle feeds another");
        if next == start || path.contains(&next) {
            return path;
        }
        path.push(next);
        current = next;
    }
}

struct Builder<'a> {
    pipeline: &'a Pipeline,
    instances: Vec<Instance>,
    /// Instance indices of each stage.
    by_stage: Vec<Vec<usize>>,
    /// Content hashes of files already read, so a file shared by many instances
    /// is read once.
    file_hashes: HashMap<std::path::PathBuf, String>,
}

impl Builder<'_> {
    fn stage_index(&self, name: &str) -> usize {
        self.pipeline
            .stages
            .iter()
            .position(|s| s.name == name)
            .expect("inputs were checked")
    }

    fn expand(&mut self, s: usize) -> Result<(), Box<Diagnostic>> {
        let pipeline = self.pipeline;
        let stage = &pipeline.stages[s];
        let source = &pipeline.source;

        // Own sweep points, then one copy per instance of each foreach input.
        let mut points: Vec<Point> = stage.points().unwrap_or_else(|| vec![Point::new()]);
        for (input, _) in &stage.inputs {
            let foreach = stage.foreach_of(input);
            if !(stage.kind.maps_inputs || foreach.is_some()) {
                continue;
            }
            let upstream = &self.by_stage[self.stage_index(input)];
            // `foreach = ["input.key"]`: only those keys of its points.
            let keys = foreach.map(|f| f.keys.as_slice()).unwrap_or_default();
            let upstream_point = &self.instances[upstream[0]].point;
            if let Some(missing) = keys.iter().find(|k| !upstream_point.contains_key(k)) {
                let swept: Vec<&str> = upstream_point.keys().collect();
                return Err(Box::new(
                    Diagnostic::at(
                        source,
                        foreach.and_then(|f| f.span.clone()).or_else(|| stage.span.clone()),
                        format!("`foreach` maps over `{missing}` of `{input}`, but its instances are swept over {swept:?}"),
                    )
                    .in_stage(&stage.name),
                ));
            }
            let shared = shared_keys(&points[0], upstream_point);
            let index = self.index_by(upstream, &shared);
            let mut next = Vec::new();
            let mut seen = HashSet::new();
            for point in &points {
                for &u in index.get(&project(point, &shared)).into_iter().flatten() {
                    let mut merged = point.clone();
                    for (k, v) in self.instances[u].point.iter() {
                        if keys.is_empty() || keys.iter().any(|key| key.as_str() == &**k) {
                            merged.insert(k.clone(), v.clone());
                        }
                    }
                    // Upstream instances that agree on the keys give one point.
                    if keys.is_empty() || seen.insert(instance_id("", &merged)) {
                        next.push(merged);
                    }
                }
            }
            if next.is_empty() {
                return Err(Box::new(
                    Diagnostic::at(
                        source,
                        stage.span.clone(),
                        format!("no sweep point matches an instance of input `{input}` (the swept keys {shared:?} share no values)"),
                    )
                    .in_stage(&stage.name),
                ));
            }
            points = next;
        }

        let input_kinds: Vec<String> = stage
            .inputs
            .iter()
            .map(|(name, _)| {
                pipeline.stages[self.stage_index(name)]
                    .kind
                    .name
                    .to_string()
            })
            .collect();
        let cx = ConfigureContext {
            base_dir: &pipeline.base_dir,
            input_kinds: &input_kinds,
        };
        let stage_name: Arc<str> = Arc::from(stage.name.as_str());

        // Index each input stage's instances by the keys it shares with this one.
        let mut input_indexes = Vec::new();
        for (input, _) in &stage.inputs {
            let upstream = self.by_stage[self.stage_index(input)].clone();
            let shared = points
                .first()
                .map(|p| shared_keys(p, &self.instances[upstream[0]].point))
                .unwrap_or_default();
            let index = self.index_by(&upstream, &shared);
            input_indexes.push((input.clone(), shared, index));
        }

        self.instances.reserve(points.len());
        self.by_stage[s].reserve(points.len());
        let mut seen_ids: HashSet<String> = HashSet::with_capacity(points.len());
        for point in points {
            let id = instance_id(&stage.name, &point);
            // Ids name results directories and state entries: two instances
            // with one id would overwrite each other. Quoting makes this
            // unreachable for the values a sweep holds; checked all the same.
            if !seen_ids.insert(id.clone()) {
                return Err(Box::new(
                    Diagnostic::at(
                        source,
                        stage.span.clone(),
                        format!("two sweep points of this stage have the same instance id `{id}`; make the sweep values distinct"),
                    )
                    .in_stage(&stage.name),
                ));
            }
            let mut inputs = Vec::new();
            for (input, shared, index) in &input_indexes {
                let matched = index
                    .get(&project(&point, shared))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                if matched.is_empty() {
                    return Err(Box::new(
                        Diagnostic::at(
                            source,
                            stage.span.clone(),
                            format!("instance `{id}` matches no instance of input `{input}` (they share the swept keys {shared:?} but no values)"),
                        )
                        .in_stage(&stage.name),
                    ));
                }
                inputs.extend_from_slice(matched);
            }
            let params = resolve_params(pipeline, s, &point);
            let job = (stage.kind.configure)(&params, &cx).map_err(|e| {
                let where_ = if point.is_empty() {
                    String::new()
                } else {
                    format!(" (instance `{id}`)")
                };
                let message = match &e.key {
                    Some(key) => format!("parameter `{key}`{where_}: {}", e.message),
                    None => format!("{}{where_}", e.message),
                };
                Box::new(
                    Diagnostic::at(source, stage.span_of(e.key.as_deref()), message)
                        .in_stage(&stage.name),
                )
            })?;
            let files = self.hash_files(stage, job.files())?;
            let key = CacheKey::new(
                stage.kind.name,
                stage.kind.version,
                CanonicalJson::of_table(&params),
                inputs
                    .iter()
                    .map(|&i| self.instances[i].fingerprint.clone())
                    .collect(),
                files,
            );
            let resources = job.resources();
            let prefix = job.prefix().map(|prefix| {
                let mut key = CacheKey::new(
                    stage.kind.name,
                    stage.kind.version,
                    CanonicalJson::of_table(&prefix.params),
                    key.inputs.clone(),
                    key.files.clone(),
                );
                // Never equal to an instance's own key.
                key.kind = format!("{}#prefix", stage.kind.name).into();
                Box::new(PrefixLink {
                    fingerprint: key.fingerprint(),
                    length: prefix.length,
                    after: None,
                    next: None,
                })
            });
            let index = self.instances.len();
            self.instances.push(Instance {
                id,
                stage_index: s,
                stage_name: stage_name.clone(),
                kind: stage.kind,
                point,
                inputs,
                job,
                resources,
                fingerprint: key.fingerprint(),
                key,
                prefix,
            });
            self.by_stage[s].push(index);
        }
        Ok(())
    }

    fn index_by(&self, instances: &[usize], keys: &[String]) -> HashMap<String, Vec<usize>> {
        let mut index: HashMap<String, Vec<usize>> = HashMap::new();
        for &i in instances {
            index
                .entry(project(&self.instances[i].point, keys))
                .or_default()
                .push(i);
        }
        index
    }

    fn hash_files(
        &mut self,
        stage: &StageDef,
        files: Vec<std::path::PathBuf>,
    ) -> Result<Vec<FileHash>, Box<Diagnostic>> {
        let mut hashes = Vec::with_capacity(files.len());
        for path in files {
            let hash = match self.file_hashes.get(&path) {
                Some(h) => h.clone(),
                None => {
                    let shown = shown_path(&path, &self.pipeline.base_dir);
                    let error = |message: String| {
                        let key = param_naming(stage, &shown);
                        Box::new(
                            Diagnostic::at(
                                &self.pipeline.source,
                                stage.span_of(key.as_deref()),
                                message,
                            )
                            .in_stage(&stage.name),
                        )
                    };
                    // The type first: opening a FIFO blocks until a writer
                    // comes, and a device such as /dev/zero never ends.
                    let meta = std::fs::metadata(&path)
                        .map_err(|e| error(format!("cannot read `{shown}`: {e}")))?;
                    if !meta.is_file() {
                        return Err(error(format!(
                            "`{shown}` is {}, not a regular file: a stage can only depend on regular files",
                            file_type_name(&meta.file_type())
                        )));
                    }
                    let h = hash_file(&path)
                        .map_err(|e| error(format!("cannot read `{shown}`: {e}")))?;
                    self.file_hashes.insert(path.clone(), h.clone());
                    h
                }
            };
            hashes.push(FileHash {
                path: shown_path(&path, &self.pipeline.base_dir),
                blake3: hash,
            });
        }
        Ok(hashes)
    }
}

/// A file type in words, for errors.
fn file_type_name(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// A path as the pipeline file wrote it: relative to its directory where possible,
/// so moving the whole project does not change fingerprints.
fn shown_path(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .to_string_lossy()
        .to_string()
}

/// The parameter whose value mentions a file, to point errors at it.
fn param_naming(stage: &StageDef, shown: &str) -> Option<String> {
    fn mentions(value: &toml::Value, shown: &str) -> bool {
        match value {
            toml::Value::String(s) => s == shown || shown.ends_with(s.as_str()),
            toml::Value::Array(items) => items.iter().any(|v| mentions(v, shown)),
            toml::Value::Table(t) => t.values().any(|v| mentions(v, shown)),
            _ => false,
        }
    }
    stage
        .params
        .iter()
        .find(|(_, v)| mentions(v, shown))
        .map(|(k, _)| k.clone())
}

/// Keys two points share, sorted.
fn shared_keys(a: &Point, b: &Point) -> Vec<String> {
    a.keys()
        .filter(|k| b.contains_key(k))
        .map(String::from)
        .collect()
}

/// A point's values on `keys`, as a lookup key.
fn project(point: &Point, keys: &[String]) -> String {
    let mut out = String::new();
    for k in keys {
        if let Some(v) = point.get(k) {
            out.push_str(&canonical_json_text(v));
        }
        out.push('\u{1f}');
    }
    out
}

/// `stage[k=v,...]`, or just `stage` for an unswept stage.
pub fn instance_id(stage: &str, point: &Point) -> String {
    if point.is_empty() {
        return stage.to_string();
    }
    let mut id = String::with_capacity(stage.len() + 16 * point.len());
    id.push_str(stage);
    for (n, (k, v)) in point.iter().enumerate() {
        id.push(if n == 0 { '[' } else { ',' });
        id.push_str(k);
        id.push('=');
        match v {
            // Quoted (JSON) when the text could be misread as the id's own
            // punctuation: `a="1,b=2"` and `a=1,b=2` stay distinct.
            toml::Value::String(text)
                if text.is_empty() || text.contains([',', '=', '[', ']', '"', '\\']) =>
            {
                id.push_str(&serde_json::to_string(text).expect("strings serialize"));
            }
            _ => write_display_value(&mut id, v),
        }
    }
    id.push(']');
    id
}

/// The stage's parameters with this instance's own sweep values, the seed and,
/// for kinds that name it, the pipeline file.
fn resolve_params(pipeline: &Pipeline, s: usize, point: &Point) -> toml::Table {
    let stage = &pipeline.stages[s];
    let mut params = stage.params.clone();
    for sweep in stage.sweeps() {
        for axis in sweep.all_axes() {
            if let Some(v) = point.get(&axis.key) {
                params.insert(axis.key.clone(), v.clone());
            }
        }
    }
    if stage.kind.takes_seed && !params.contains_key("seed") {
        params.insert("seed".into(), toml::Value::Integer(pipeline.seed as i64));
    }
    if stage.kind.names_pipeline_file && !params.contains_key("pipeline_file") {
        params.insert(
            "pipeline_file".into(),
            toml::Value::String(pipeline.shown_path.clone()),
        );
    }
    params
}
