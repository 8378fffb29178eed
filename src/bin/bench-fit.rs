//! Benchmark of the fit (not a test): Besiroglu et al.'s 4,500-start grid on the
//! 240 Chinchilla runs, and bootstrap refits, timed. `bench/fit/run.sh` runs it
//! beside the same grid in scipy and prints both.
//!
//! Usage: bench-fit [CSV] [--threads 1,2] [--bootstrap 4000] [--tol-cost X] [--json]

use std::path::PathBuf;
use std::time::Instant;

use scalepipe::fit::analysis::{Analysis, Hooks};
use scalepipe::fit::bootstrap::{self, BootstrapSettings};
use scalepipe::fit::optimize::Settings;
use scalepipe::fit::table::{self, ColumnMap};
use scalepipe::fit::{Form, FormKind, Irreducible, Observation, Points, Variable};

fn main() {
    let mut csv = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/reference/chinchilla_svg_extracted.csv"
    ));
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut threads = vec![1, cores];
    threads.dedup();
    let mut replicates = 4000;
    let mut json = false;
    let mut optimizer = Settings::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => {
                threads = args
                    .next()
                    .expect("--threads needs a list")
                    .split(',')
                    .map(|t| t.parse().expect("thread counts are integers"))
                    .collect()
            }
            "--bootstrap" => {
                replicates = args
                    .next()
                    .and_then(|b| b.parse().ok())
                    .expect("--bootstrap needs a number")
            }
            "--json" => json = true,
            "--tol-cost" => {
                optimizer.tol_cost = args
                    .next()
                    .and_then(|b| b.parse().ok())
                    .expect("--tol-cost needs a number")
            }
            other => csv = PathBuf::from(other),
        }
    }

    let raw = table::read_file(&csv).unwrap_or_else(|e| panic!("{e}"));
    let map = ColumnMap {
        n: Some("Model Size".into()),
        c: Some("Training FLOP".into()),
        d_from_c: true,
        ..ColumnMap::default()
    };
    let df = table::canonical(&raw, &map, &csv, "chinchilla").expect("columns");
    let runs = table::runs(&df).expect("canonical frame");
    let sel = table::select(&runs, &[Variable::N, Variable::D], 5);
    let ids: Vec<String> = sel.included.iter().map(|&i| runs[i].id.clone()).collect();
    let obs: Vec<Observation> = sel
        .included
        .iter()
        .map(|&i| runs[i].observation())
        .collect();

    let form = Form::new(FormKind::Chinchilla, Irreducible::Free);
    let analysis = Analysis {
        optimizer,
        budgets: vec![5.76e23],
        ..Analysis::new(form)
    };
    let hooks = Hooks::NONE;

    // CPU seconds of the whole process (all threads), from /proc on Linux: on a
    // shared machine CPU time is steadier than wall time.
    let cpu = || -> f64 {
        std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                let fields: Vec<&str> = s.rsplit(')').next()?.split_whitespace().collect();
                let ticks: f64 =
                    fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
                Some(ticks / 100.0)
            })
            .unwrap_or(f64::NAN)
    };
    let mut grid_times = Vec::new();
    let mut report = None;
    for &t in &threads {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .expect("thread pool");
        let start = Instant::now();
        let cpu0 = cpu();
        let r = pool
            .install(|| analysis.run(&ids, &obs, &hooks))
            .expect("fit");
        grid_times.push((t, start.elapsed().as_secs_f64(), cpu() - cpu0));
        report = Some(r);
    }
    let report = report.expect("at least one thread count");

    // The bootstrap alone: resample, refit from the optimum and 4 random grid
    // starts, summarise.
    let boot_threads = *threads.last().expect("thread counts");
    let settings = BootstrapSettings {
        replicates,
        random_starts: 4,
        seed: 0,
    };
    let points = Points::new(&form, &obs);
    let numbers = |t: &[f64]| analysis.numbers(t);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(boot_threads)
        .build()
        .expect("thread pool");
    let start = Instant::now();
    let cpu0 = cpu();
    let booted = pool
        .install(|| {
            bootstrap::bootstrap(
                &form,
                &points,
                analysis.delta,
                &report.theta,
                &analysis.grid,
                &analysis.optimizer,
                &settings,
                &numbers,
                &|_| {},
                &|| false,
            )
        })
        .expect("bootstrap");
    let boot_wall = start.elapsed().as_secs_f64();
    let boot_cpu = cpu() - cpu0;

    let p = |name: &str| {
        report
            .parameters
            .get(name)
            .map(|e| e.value)
            .unwrap_or(f64::NAN)
    };
    let out = serde_json::json!({
        "tool": "scalepipe (argmin L-BFGS)",
        "points": report.n_points,
        "starts": report.optimizer.starts,
        "grid_wall_s": grid_times.iter().map(|(t, s, c)| serde_json::json!({"threads": t, "wall_s": s, "cpu_s": c})).collect::<Vec<_>>(),
        "evals": report.optimizer.evaluations,
        "objective": report.objective,
        "A": p("A"), "B": p("B"), "E": p("E"), "alpha": p("alpha"), "beta": p("beta"),
        "within_1e-6": report.optimizer.starts_within_1e_6,
        "converged": report.optimizer.converged,
        "bootstrap": {
            "replicates": replicates,
            "starts_per_replicate": 5,
            "threads": boot_threads,
            "wall_s": boot_wall,
            "cpu_s": boot_cpu,
            "not_converged": booted.not_converged,
            "alpha_ci": booted.get("alpha").map(|i| [i.lo, i.hi]),
            "beta_ci": booted.get("beta").map(|i| [i.lo, i.hi]),
        },
    });
    if json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
    }
}
