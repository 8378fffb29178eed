//! The store's guarantees through the CLI: entries are checked against their
//! manifests before they are used, bad ones are quarantined and re-computed,
//! results are copies, gc never deletes what an unreadable state references,
//! and instance ids map to distinct, valid directories.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{ids, Output, Workspace};

/// Shell text that sets `$IN` to the first input's output directory.
const FIRST_INPUT: &str = r#"IN=$(python3 -c 'import json,os;print(json.load(open(os.environ["SCALEPIPE_INPUTS"]))[0]["dir"])')"#;

/// `gen` writes a value; `use` copies it (plus a suffix that the tests change
/// to make only `use` run again).
fn chain(use_cmd_tail: &str) -> String {
    format!(
        r#"
[pipeline]
name = "chain"

[stages.gen]
kind = "command"
cmd = "printf 'hello world' > value.txt"

[stages.use]
kind = "command"
inputs = ["gen"]
cmd = "{FIRST_INPUT}; cat $IN/value.txt > copy.txt{use_cmd_tail}"
"#,
        FIRST_INPUT = FIRST_INPUT.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

fn run_json(ws: &Workspace, file: &str) -> serde_json::Value {
    ws.run(&["run", file, "--json"]).success().json()
}

fn quarantined(ws: &Workspace) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(ws.join(".scalepipe/quarantine")) else {
        return Vec::new();
    };
    dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn verify_finds_a_truncated_entry_and_repair_quarantines_it_for_recomputation() {
    let ws = Workspace::new();
    ws.write("p.toml", &chain(""));
    run_json(&ws, "p.toml");
    let gen = ws.fingerprint("p.toml", "gen");
    let clean = ws.run(&["verify"]).success();
    assert!(
        clean.stdout.contains("verified 2 entries: 0 bad"),
        "{clean:?}"
    );

    std::fs::write(
        ws.join(&format!(".scalepipe/cache/{gen}/out/value.txt")),
        "hel",
    )
    .unwrap();
    let found = ws.run(&["verify"]);
    assert_eq!(found.code, 1, "{found:?}");
    assert!(
        found.stdout.contains(&gen) && found.stdout.contains("value.txt"),
        "{found:?}"
    );
    assert!(
        ws.join(&format!(".scalepipe/cache/{gen}")).exists(),
        "verify alone moves nothing"
    );

    let repaired = ws.run(&["verify", "--pipeline", "chain", "--repair"]);
    assert_eq!(repaired.code, 1, "{repaired:?}");
    assert!(!ws.join(&format!(".scalepipe/cache/{gen}")).exists());
    let moved = quarantined(&ws);
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(moved[0].starts_with(&gen));
    let reason = ws.read(&format!(".scalepipe/quarantine/{}/reason.txt", moved[0]));
    assert!(reason.contains("value.txt"), "{reason}");

    let again = run_json(&ws, "p.toml");
    assert_eq!(ids(&again, "executed"), vec!["gen"], "{again}");
    ws.run(&["verify"]).success();
}

#[test]
fn a_directory_without_a_manifest_is_never_a_cache_hit() {
    let ws = Workspace::new();
    ws.write("p.toml", &chain(""));
    let gen = ws.fingerprint("p.toml", "gen");
    // An empty directory squatting on the entry's name before the first run.
    std::fs::create_dir_all(ws.join(&format!(".scalepipe/cache/{gen}"))).unwrap();
    let plan = ws.run(&["plan", "p.toml", "--json"]).success().json();
    assert_eq!(plan["stages"][0]["status"], "run", "{plan}");
    let first = run_json(&ws, "p.toml");
    assert_eq!(ids(&first, "executed"), vec!["gen", "use"], "{first}");
    assert_eq!(ws.read("results/chain/use/copy.txt"), "hello world");
    assert!(ws
        .join(&format!(".scalepipe/cache/{gen}/manifest.json"))
        .is_file());

    // A complete entry whose manifest is deleted later runs again too.
    std::fs::remove_file(ws.join(&format!(".scalepipe/cache/{gen}/manifest.json"))).unwrap();
    let second = run_json(&ws, "p.toml");
    assert_eq!(ids(&second, "executed"), vec!["gen"], "{second}");
    ws.run(&["verify"]).success();
}

#[test]
fn a_truncated_input_entry_is_quarantined_recomputed_and_named_in_a_warning() {
    let ws = Workspace::new();
    ws.write("p.toml", &chain(""));
    run_json(&ws, "p.toml");
    let gen = ws.fingerprint("p.toml", "gen");
    std::fs::write(
        ws.join(&format!(".scalepipe/cache/{gen}/out/value.txt")),
        "",
    )
    .unwrap();

    // Only `use` changes, so `gen`'s damaged entry is about to be handed to it.
    ws.write("p.toml", &chain("; echo 2 >> copy.txt"));
    let out = ws.run(&["run", "p.toml"]).success();
    assert!(
        out.stderr.contains("warning:")
            && out.stderr.contains(&gen)
            && out.stderr.contains("value.txt"),
        "{out:?}"
    );
    let record: serde_json::Value =
        serde_json::from_str(&ws.read("results/chain/run.json")).unwrap();
    let warnings = record["warnings"].as_array().expect("warnings in run.json");
    assert_eq!(warnings.len(), 1, "{record}");
    assert!(warnings[0].as_str().unwrap().contains(&gen));
    let gen_record = record["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "gen")
        .unwrap();
    assert_eq!(gen_record["status"], "executed", "{record}");
    assert!(
        gen_record["reason"].as_str().unwrap().contains("damaged"),
        "{record}"
    );
    assert_eq!(ws.read("results/chain/use/copy.txt"), "hello world2\n");
    assert_eq!(quarantined(&ws).len(), 1);
}

#[test]
fn run_verify_rehashes_and_catches_same_size_corruption_with_the_old_mtime() {
    let ws = Workspace::new();
    ws.write("p.toml", &chain(""));
    run_json(&ws, "p.toml");
    rewrite_keeping_size_and_mtime(&ws);

    ws.write("p.toml", &chain("; echo 2 >> copy.txt"));
    let out = ws
        .run(&["run", "p.toml", "--verify", "--json"])
        .success()
        .json();
    assert_eq!(ids(&out, "executed"), vec!["gen", "use"], "{out}");
    assert_eq!(ws.read("results/chain/use/copy.txt"), "hello world2\n");
}

#[test]
fn editing_a_published_result_never_changes_the_cached_entry() {
    let ws = Workspace::new();
    ws.write("p.toml", &chain(""));
    run_json(&ws, "p.toml");
    let gen = ws.fingerprint("p.toml", "gen");
    // These tests run as root, to whom permissions are no obstacle: the copy
    // itself is what protects the entry.
    let result = ws.join("results/chain/gen/value.txt");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&result)
        .unwrap();
    std::io::Write::write_all(&mut f, b"x\n").unwrap();
    drop(f);
    assert_eq!(
        ws.read(&format!(".scalepipe/cache/{gen}/out/value.txt")),
        "hello world"
    );
    ws.run(&["verify"]).success();
    ws.write("p.toml", &chain("; echo 2 >> copy.txt"));
    run_json(&ws, "p.toml");
    assert_eq!(ws.read("results/chain/use/copy.txt"), "hello world2\n");
}

#[test]
fn a_stage_that_writes_into_its_input_fails_naming_the_file() {
    let ws = Workspace::new();
    ws.write("p.toml", &chain("; echo evil >> $IN/value.txt"));
    let out = ws.run(&["run", "p.toml"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("input `gen` changed") && out.stderr.contains("value.txt"),
        "{out:?}"
    );
    assert_eq!(quarantined(&ws).len(), 1, "the damaged input is set aside");
    ws.write("p.toml", &chain(""));
    let again = run_json(&ws, "p.toml");
    assert_eq!(ids(&again, "executed"), vec!["gen", "use"], "{again}");
    assert_eq!(ws.read("results/chain/use/copy.txt"), "hello world");
}

#[test]
fn a_symlink_among_the_outputs_is_refused_and_not_published() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        "[pipeline]\nname = \"links\"\n[stages.leak]\nkind = \"command\"\ncmd = \"ln -s /etc/passwd passwd\"\n",
    );
    let out = ws.run(&["run", "p.toml"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("passwd") && out.stderr.contains("symbolic link"),
        "{out:?}"
    );
    assert!(ws.entries().is_empty());
    assert!(!ws.join("results/links/leak/passwd").exists());
}

#[test]
fn gc_refuses_to_run_when_a_pipeline_state_is_unreadable() {
    let ws = Workspace::new();
    ws.write("p.toml", &chain(""));
    run_json(&ws, "p.toml");
    let before = ws.entries();
    assert_eq!(before.len(), 2);
    for garbage in [
        "not json",
        "",
        "{\"pipeline\": \"chain\", \"file\": \"p.toml\", \"instancez\": {}}",
    ] {
        ws.write(".scalepipe/pipelines/chain.json", garbage);
        for args in [&["gc"][..], &["gc", "--dry-run"][..]] {
            let out = ws.run(args);
            assert_eq!(out.code, 2, "{args:?} with {garbage:?}: {out:?}");
            assert!(out.stderr.contains("chain.json"), "{out:?}");
            assert_eq!(ws.entries(), before, "{args:?} deleted entries");
        }
    }
}

#[test]
fn gc_dry_run_waits_for_the_workspace_lock() {
    let ws = Workspace::new();
    ws.write("p.toml", &chain(""));
    run_json(&ws, "p.toml");
    let lock = std::fs::File::options()
        .write(true)
        .open(ws.join(".scalepipe/lock"))
        .unwrap();
    lock.lock().unwrap();
    let mut child = ws.spawn(&["gc", "--dry-run"]);
    let stderr = child.stderr.take().unwrap();
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    assert!(line.contains("waiting"), "{line}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "gc --dry-run ended while the lock was held"
    );
    lock.unlock().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
}

#[test]
fn two_pipeline_files_with_one_name_are_refused() {
    let ws = Workspace::new();
    ws.write("a.toml", &chain(""));
    ws.write("b.toml", &chain("; echo b >> copy.txt"));
    run_json(&ws, "a.toml");
    let snapshot = ws.snapshot();
    for args in [&["plan", "b.toml"][..], &["run", "b.toml"][..]] {
        let out = ws.run(args);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(
            out.stderr.contains("a.toml") && out.stderr.contains("`chain`"),
            "{out:?}"
        );
    }
    assert_eq!(
        ws.snapshot(),
        snapshot,
        "a refused run changed the workspace"
    );
    // Once the first file is gone, the name is free for the second.
    std::fs::remove_file(ws.join("a.toml")).unwrap();
    run_json(&ws, "b.toml");
}

#[test]
fn ids_that_differ_only_in_punctuation_get_distinct_ids_and_directories() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        r#"
[pipeline]
name = "ids"
[stages.s]
kind = "command"
cmd = "echo $SCALEPIPE_PARAM_V > v.txt"
[stages.s.sweep]
v = ["a_b", "a/b", "a%2Fb"]
[stages.t]
kind = "command"
cmd = "echo $SCALEPIPE_PARAM_A $SCALEPIPE_PARAM_B > v.txt"
[stages.t.sweep]
a = ["1", "1,b=2"]
b = ["2,b=3", "3"]
"#,
    );
    let out = run_json(&ws, "p.toml");
    let executed = ids(&out, "executed");
    assert_eq!(executed.len(), 7, "{out}");
    let mut dirs: Vec<String> = std::fs::read_dir(ws.join("results/ids"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 7, "{dirs:?}");
    let values: std::collections::BTreeSet<String> = dirs
        .iter()
        .map(|d| ws.read(&format!("results/ids/{d}/v.txt")))
        .collect();
    assert_eq!(
        values.len(),
        7,
        "each directory holds its own instance: {values:?}"
    );
    let second = run_json(&ws, "p.toml");
    assert_eq!(ids(&second, "cached").len(), 7, "{second}");
}

#[test]
fn huge_and_long_ids_plan_run_and_stay_cached() {
    let ws = Workspace::new();
    let huge = "x".repeat(70_000);
    ws.write(
        "huge.toml",
        &format!("[pipeline]\nname = \"huge\"\n[stages.s]\nkind = \"command\"\ncmd = \"true\"\n[stages.s.sweep]\nv = [\"{huge}\"]\n"),
    );
    let plan = ws.run(&["plan", "huge.toml"]).success();
    assert!(
        plan.stdout.contains("1 instances: 1 to run"),
        "{}",
        &plan.stdout[plan.stdout.len() - 200..]
    );

    let long_a = format!("{}a", "y".repeat(300));
    let long_b = format!("{}b", "y".repeat(300));
    ws.write(
        "long.toml",
        &format!("[pipeline]\nname = \"long\"\n[stages.s]\nkind = \"command\"\ncmd = \"echo $SCALEPIPE_PARAM_V > v.txt\"\n[stages.s.sweep]\nv = [\"{long_a}\", \"{long_b}\"]\n"),
    );
    let first = run_json(&ws, "long.toml");
    assert_eq!(ids(&first, "executed").len(), 2, "{first}");
    let second = run_json(&ws, "long.toml");
    assert_eq!(ids(&second, "cached").len(), 2, "{second}");
    let contents: std::collections::BTreeSet<String> = std::fs::read_dir(ws.join("results/long"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| std::fs::read_to_string(p.join("v.txt")).unwrap())
        .collect();
    assert_eq!(contents.len(), 2, "{contents:?}");
}

/// Waits for a command with a deadline, so a hang fails the test instead of
/// blocking it.
fn run_with_deadline(ws: &Workspace, args: &[&str]) -> Output {
    let mut child = ws.spawn(args);
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("scalepipe {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn deps_that_are_not_regular_files_are_refused_at_plan_time() {
    let ws = Workspace::new();
    let fifo = ws.join("some-fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    std::fs::create_dir_all(ws.join("a-dir")).unwrap();
    for (dep, what) in [
        ("some-fifo", "a FIFO"),
        ("/dev/zero", "a device"),
        ("a-dir", "a directory"),
    ] {
        ws.write(
            "p.toml",
            &format!("[pipeline]\nname = \"deps\"\n[stages.s]\nkind = \"command\"\ndeps = [\"{dep}\"]\ncmd = \"true\"\n"),
        );
        for cmd in ["plan", "run"] {
            let out = run_with_deadline(&ws, &[cmd, "p.toml"]);
            assert_eq!(out.code, 2, "{cmd} {dep}: {out:?}");
            assert!(
                out.stderr.contains(dep) && out.stderr.contains(what),
                "{cmd} {dep}: {out:?}"
            );
        }
    }
    assert!(!Path::new(&ws.join(".scalepipe/cache")).exists());
}

#[test]
fn a_failed_attempt_keeps_its_logs_but_not_its_partial_outputs() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        "[pipeline]\nname = \"fails\"\n[stages.big]\nkind = \"command\"\ncmd = \"head -c 100000 /dev/zero > partial.bin; echo dying; exit 1\"\n",
    );
    let out = ws.run(&["run", "p.toml", "--json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let fp = ws.fingerprint("p.toml", "big");
    let failed = ws.join(&format!(".scalepipe/failed/{fp}"));
    assert!(ws
        .read(&format!(".scalepipe/failed/{fp}/log.txt"))
        .contains("dying"));
    assert!(
        !failed.join("out").exists(),
        "partial outputs kept in failed/"
    );
}

/// Shell text that rewrites `$IN/value.txt` with other bytes of the same size
/// and sets its modification time back: only its ctime and content move.
const SAME_SIZE_SAME_MTIME: &str = r#"M=$(stat -c %y $IN/value.txt); printf 'HELLO WORLD' > $IN/value.txt; touch -d "$M" $IN/value.txt"#;

#[test]
fn a_stage_that_rewrites_an_input_keeping_its_size_and_mtime_fails_naming_the_file() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        &chain(&format!("; {}", SAME_SIZE_SAME_MTIME.replace('"', "\\\""))),
    );
    let out = ws.run(&["run", "p.toml"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("input `gen` changed") && out.stderr.contains("value.txt"),
        "{out:?}"
    );
    assert_eq!(quarantined(&ws).len(), 1, "the damaged input is set aside");
}

#[test]
fn a_same_size_rewrite_with_the_old_mtime_is_caught_at_run_start_without_verify() {
    let ws = Workspace::new();
    ws.write("p.toml", &chain(""));
    run_json(&ws, "p.toml");
    rewrite_keeping_size_and_mtime(&ws);
    ws.write("p.toml", &chain("; echo 2 >> copy.txt"));
    let out = run_json(&ws, "p.toml");
    assert_eq!(ids(&out, "executed"), vec!["gen", "use"], "{out}");
    assert_eq!(ws.read("results/chain/use/copy.txt"), "hello world2\n");
    assert_eq!(quarantined(&ws).len(), 1);
}

#[test]
fn a_link_planted_at_the_manifests_name_does_not_send_the_manifest_outside() {
    let ws = Workspace::new();
    let victim = ws.write("victim.txt", "precious\n");
    ws.write(
        "p.toml",
        &format!(
            "[pipeline]\nname = \"m\"\n[stages.s]\nkind = \"command\"\ncmd = \"ln -s {} ../manifest.json; echo ok > out.txt\"\n",
            victim.display()
        ),
    );
    ws.run(&["run", "p.toml"]).success();
    assert_eq!(ws.read("victim.txt"), "precious\n");
    ws.run(&["verify"]).success();
}

#[test]
fn a_stage_that_replaces_its_directories_with_links_fails_and_nothing_outside_is_touched() {
    for (what, cmd) in [
        (
            "output directory",
            "cd .. && rm -rf out && ln -s {outside}/out out",
        ),
        (
            "entry directory",
            "D=$(dirname $SCALEPIPE_OUT); cd / && mv $D $D.moved && ln -s {outside} $D",
        ),
    ] {
        let ws = Workspace::new();
        let outside = ws.join("outside");
        ws.write("outside/out/precious.txt", "precious\n");
        let cmd = cmd.replace("{outside}", &outside.display().to_string());
        ws.write(
            "p.toml",
            &format!("[pipeline]\nname = \"l\"\n[stages.s]\nkind = \"command\"\ncmd = \"{cmd}\"\n"),
        );
        let out = ws.run(&["run", "p.toml"]);
        assert_eq!(out.code, 1, "{what}: {out:?}");
        assert!(
            out.stderr.contains(what) && out.stderr.contains("symbolic link"),
            "{what}: {out:?}"
        );
        assert!(ws.entries().is_empty(), "{what}");
        assert!(!ws.join("results/l/s").exists(), "{what}");
        let names: Vec<String> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["out"], "{what}: the engine wrote beside it");
        assert_eq!(ws.read("outside/out/precious.txt"), "precious\n", "{what}");
        // The next run cleans `tmp/` without following the link either.
        ws.write(
            "p.toml",
            "[pipeline]\nname = \"l\"\n[stages.s]\nkind = \"command\"\ncmd = \"echo ok > ok.txt\"\n",
        );
        ws.run(&["run", "p.toml"]).success();
        assert_eq!(ws.read("outside/out/precious.txt"), "precious\n", "{what}");
    }
}

/// Rewrites `gen`'s cached `value.txt` with different bytes of the same size
/// and sets its old modification time back: what the quick check of size and
/// mtime alone cannot see.
fn rewrite_keeping_size_and_mtime(ws: &Workspace) {
    let gen = ws.fingerprint("p.toml", "gen");
    let file = ws.join(&format!(".scalepipe/cache/{gen}/out/value.txt"));
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, "HELLO WORLD").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}
