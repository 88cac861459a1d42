//! Bad inputs and faults, as a table: each case sets up a folder, runs nndl, and asserts the
//! exit status, the exact one line on stderr, and that what was there before is still there.
use crate::util::{mnist_dir, nndl, tempdir, Scratch};
use std::fs;
use std::path::Path;
use std::process::Output;

struct Case {
    name: &'static str,
    /// Prepares the folder, runs nndl, and returns its output with the expected status and line.
    run: fn(&Scratch) -> (Output, i32, String),
}

fn mlp(args: &[&str], out: &Path) -> Output {
    nndl().arg("mlp").args(args).args(["--device", "cpu", "--threads", "1", "--quiet", "--data"]).arg(mnist_dir())
        .arg("--out").arg(out).output().unwrap()
}

/// A folder that looks like a run nndl started (marker and config), optionally finished.
fn fake_run(dir: &Path, finished: bool) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(".nndl-run"), "{}").unwrap();
    fs::write(dir.join("config.json"), "kept").unwrap();
    if finished {
        fs::write(dir.join("summary.json"), "kept").unwrap();
    }
}

fn kept(path: &Path) {
    assert_eq!(fs::read_to_string(path).unwrap(), "kept", "{} was changed", path.display());
}

/// A copy of the MNIST directory whose train-images file is replaced by `make`.
fn mnist_with(d: &Path, make: impl FnOnce(&Path)) -> std::path::PathBuf {
    let data = d.join("mnist");
    fs::create_dir_all(&data).unwrap();
    for f in ["train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        fs::copy(mnist_dir().join(f), data.join(f)).unwrap();
    }
    make(&data.join("train-images-idx3-ubyte"));
    data
}

fn mlp_on_data(data: &Path, out: &Path) -> Output {
    nndl().args(["mlp", "--device", "cpu", "--quiet", "--data"]).arg(data).arg("--out").arg(out).output().unwrap()
}

/// `nndl resume` of an interrupted run (20 iterations, checkpointed) whose checkpoint `damage`
/// changed; and the checkpoint's path.
fn resume_damaged(d: &Path, damage: impl FnOnce(&mut Vec<u8>)) -> (Output, std::path::PathBuf) {
    let run = d.join("run");
    assert!(mlp(&["--iterations", "20", "--eval-every", "10", "--checkpoint-every", "10"], &run).status.success());
    fs::remove_file(run.join("summary.json")).unwrap();
    let path = run.join("checkpoint.safetensors");
    let mut bytes = fs::read(&path).unwrap();
    damage(&mut bytes);
    fs::write(&path, bytes).unwrap();
    (nndl().arg("resume").arg(&run).output().unwrap(), path)
}

fn err(line: impl std::fmt::Display) -> String {
    format!("nndl: error: {line}")
}

const CASES: &[Case] = &[
    Case { name: "an unfinished run is not overwritten", run: |d| {
        let run = d.join("run");
        fake_run(&run, false);
        let out = mlp(&[], &run);
        kept(&run.join("config.json"));
        (out, 1, err(format!("{0} holds an unfinished run; resume it with `nndl resume {0}`, or pass --force to replace it", run.display())))
    }},
    Case { name: "a finished run is not overwritten", run: |d| {
        let run = d.join("run");
        fake_run(&run, true);
        let out = mlp(&[], &run);
        kept(&run.join("summary.json"));
        (out, 1, err(format!("{} already holds a run; choose another --out or pass --force to replace it", run.display())))
    }},
    Case { name: "a user's own metrics.csv is not overwritten", run: |d| {
        fs::write(d.join("metrics.csv"), "kept").unwrap();
        let out = mlp(&[], d);
        kept(&d.join("metrics.csv"));
        (out, 1, err(format!("{} holds files nndl did not write; choose another --out or pass --force to replace them", d.display())))
    }},
    Case { name: "--out names a file", run: |d| {
        let file = d.join("file");
        fs::write(&file, "kept").unwrap();
        let out = mlp(&[], &file);
        kept(&file);
        (out, 1, err(format!("cannot create output folder {}: a file of that name exists", file.display())))
    }},
    Case { name: "data fetch into a file", run: |d| {
        let file = d.join("file");
        fs::write(&file, "kept").unwrap();
        let out = nndl().args(["data", "fetch", "--data"]).arg(&file).output().unwrap();
        kept(&file);
        (out, 1, err(format!("--data {}: a file of that name exists, not a folder", file.display())))
    }},
    Case { name: "data fetch into a read-only folder: refused before any download", run: |d| {
        let mnt = d.join("ro");
        fs::create_dir(&mnt).unwrap();
        assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "ro", "tmpfs"]).arg(&mnt).status().unwrap().success());
        // No curl on the PATH: a download attempted would fail otherwise, not name the folder.
        let out = nndl().args(["data", "fetch", "--data"]).arg(&mnt).env("PATH", "/nonexistent").output().unwrap();
        let _ = std::process::Command::new("umount").arg(&mnt).status();
        (out, 1, err(format!("cannot write into data directory {}: Read-only file system (os error 30)", mnt.display())))
    }},
    Case { name: "a folder another run is writing", run: |d| {
        // Hold the lock as a live run would: flock plus owner in the file.
        let lock = fs::File::create(d.join(".nndl.lock")).unwrap();
        lock.try_lock().unwrap();
        fs::write(d.join(".nndl.lock"), format!("{{\"pid\":{},\"host\":\"testhost\"}}", std::process::id())).unwrap();
        fs::write(d.join(".nndl-run"), "{}").unwrap();
        fs::write(d.join("config.json"), "kept").unwrap();
        let out = mlp(&["--force"], d);
        kept(&d.join("config.json"));
        drop(lock);
        (out, 1, err(format!("{} is in use by another nndl run (pid {} on testhost); wait for it to finish or choose another folder", d.display(), std::process::id())))
    }},
    Case { name: "--seeds where another process runs one of them", run: |d| {
        // Not a failure of this command: the other process finishes it (exit 75, EX_TEMPFAIL).
        let held = d.join("seeds/seed-1");
        fs::create_dir_all(&held).unwrap();
        let lock = fs::File::create(held.join(".nndl.lock")).unwrap();
        lock.try_lock().unwrap();
        let out = mlp(&["--seeds", "0..1", "--iterations", "2"], &d.join("seeds"));
        drop(lock);
        assert!(d.join("seeds/seed-0/summary.json").is_file() && !held.join("summary.json").exists());
        (out, 75, err("seed 1 is run by another nndl process; rerun this command once it has ended"))
    }},
    Case { name: "--lr beyond float32", run: |d| {
        (mlp(&["--lr", "1e39"], &d.join("run")), 1, err("invalid --lr 1e39: must be a finite number > 0 that float32 can hold (at most 3.4028234663852886e38)"))
    }},
    Case { name: "--threads far beyond the cores", run: |d| {
        let max = 4 * std::thread::available_parallelism().unwrap().get();
        let out = nndl().args(["mlp", "--threads", "100000", "--quiet", "--out"]).arg(d.join("run")).output().unwrap();
        assert!(!d.join("run").exists());
        (out, 1, err(format!("invalid --threads 100000: must be between 1 and {max} (4 per core)")))
    }},
    Case { name: "xor --runs beyond what is kept", run: |_| {
        (nndl().args(["xor", "--runs", "10000000000000", "--quiet"]).output().unwrap(), 1,
            err("invalid --runs 10000000000000: must be between 1 and 10000000"))
    }},
    Case { name: "xor seeds past 2^64", run: |_| {
        (nndl().args(["xor", "--runs", "2", "--seed", "18446744073709551615", "--quiet"]).output().unwrap(), 1,
            err("invalid --seed 18446744073709551615 with --runs 2: the last seed would pass 18446744073709551615"))
    }},
    Case { name: "reproduce's 100 XOR seeds past 2^64", run: |d| {
        let out = nndl().args(["reproduce", "--only", "xor", "--seed", "18446744073709551600", "--quiet", "--out"]).arg(d.join("r")).output().unwrap();
        assert!(!d.join("r").exists());
        (out, 1, err("invalid --seed 18446744073709551600: the XOR part runs 100 seeds from it, past the largest seed 18446744073709551615; use --only to leave xor out, or a smaller --seed"))
    }},
    Case { name: "xor --force without --out", run: |_| {
        (nndl().args(["xor", "--runs", "3", "--force", "--quiet"]).output().unwrap(), 1, err("--force replaces what --out holds; give --out too"))
    }},
    Case { name: "bptt --trials beyond the bound", run: |_| {
        (nndl().args(["bptt", "--trials", "2000000", "--quiet"]).output().unwrap(), 1, err("invalid --trials 2000000: must be between 1 and 1000000"))
    }},
    Case { name: "a 10 GB file in place of an MNIST file", run: |d| {
        let data = mnist_with(d, |p| fs::File::create(p).unwrap().set_len(10 << 30).unwrap());
        let out = mlp_on_data(&data, &d.join("run"));
        assert!(!d.join("run").exists());
        let f = data.join("train-images-idx3-ubyte");
        (out, 1, err(format!("MNIST file {} is 10240 MB, larger than any MNIST file (64 MB at most); run `nndl data fetch --data {}`", f.display(), data.display())))
    }},
    Case { name: "a directory in place of an MNIST file", run: |d| {
        let data = mnist_with(d, |p| fs::create_dir(p).unwrap());
        let f = data.join("train-images-idx3-ubyte");
        (mlp_on_data(&data, &d.join("run")), 1,
            err(format!("MNIST file {} is a directory, not a regular file; run `nndl data fetch --data {}`", f.display(), data.display())))
    }},
    Case { name: "a FIFO in place of an MNIST file", run: |d| {
        let data = mnist_with(d, |p| assert!(std::process::Command::new("mkfifo").arg(p).status().unwrap().success()));
        let f = data.join("train-images-idx3-ubyte");
        (mlp_on_data(&data, &d.join("run")), 1,
            err(format!("MNIST file {} is a FIFO, not a regular file; run `nndl data fetch --data {}`", f.display(), data.display())))
    }},
    Case { name: "a symlink loop in place of an MNIST file", run: |d| {
        let data = mnist_with(d, |p| std::os::unix::fs::symlink(p, p).unwrap());
        let f = data.join("train-images-idx3-ubyte");
        (mlp_on_data(&data, &d.join("run")), 1,
            err(format!("MNIST file {} is a symlink loop; run `nndl data fetch --data {}`", f.display(), data.display())))
    }},
    Case { name: "a bad value in config.json names the file", run: |d| {
        let cfg = d.join("config.json");
        let mut v = default_config();
        v["lr"] = serde_json::json!(-1.0);
        fs::write(&cfg, v.to_string()).unwrap();
        (mlp(&["--config", cfg.to_str().unwrap()], &d.join("run")), 1, err(format!("invalid {}: lr -1: must be a finite number > 0 that float32 can hold (at most 3.4028234663852886e38)", cfg.display())))
    }},
    Case { name: "a flag replaces a bad value in config.json", run: |d| {
        let cfg = d.join("config.json");
        let mut v = default_config();
        v["batch_size"] = serde_json::json!(0);
        fs::write(&cfg, v.to_string()).unwrap();
        (mlp(&["--config", cfg.to_str().unwrap(), "--batch-size", "50", "--iterations", "2"], &d.join("run")), 0, String::new())
    }},
    Case { name: "an allocation libtorch cannot make is one line", run: |d| {
        // 55,000 CNN images a batch need 5.5 GB for the first activation; the address space is
        // capped below it (libtorch itself takes about 2 GB of it).
        let script = format!("ulimit -v 6000000; exec {} cnn --device cpu --threads 1 --quiet --iterations 1 --batch-size 55000 --data {} --out {}",
            env!("CARGO_BIN_EXE_nndl"), mnist_dir().display(), d.join("run").display());
        // One line even where RUST_BACKTRACE asks for backtraces: running out of memory is no
        // bug to trace. The run's folder records why it stopped.
        let out = std::process::Command::new("sh").arg("-c").arg(script).env("RUST_BACKTRACE", "1").output().unwrap();
        let line = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert!(line.starts_with(&err("out of memory ([enforce fail at alloc_cpu.cpp")) && line.ends_with("try a smaller --batch-size, or fewer runs at once"), "{line}");
        let recorded = fs::read_to_string(d.join("run/failed.txt")).unwrap();
        assert!(recorded.starts_with("out of memory ("), "{recorded}");
        (out, 1, line)
    }},
    Case { name: "--export-final onto a file is refused before the run", run: |d| {
        let file = d.join("afile");
        fs::write(&file, b"x").unwrap();
        let out = mlp(&["--iterations", "2", "--export-final", file.to_str().unwrap()], &d.join("run"));
        assert!(!d.join("run").exists(), "nothing trained");
        (out, 1, err(format!("--export-final {}: a file of that name exists", file.display())))
    }},
    Case { name: "--export-final under a file is refused before the run", run: |d| {
        let file = d.join("afile");
        fs::write(&file, b"x").unwrap();
        let out = mlp(&["--iterations", "2", "--export-final", file.join("export").to_str().unwrap()], &d.join("run"));
        assert!(!d.join("run").exists(), "nothing trained");
        (out, 1, err(format!("--export-final {}: cannot create it: {} is a file", file.join("export").display(), file.display())))
    }},
    Case { name: "--export-final inside the new run folder", run: |d| {
        // Checked without being made, so that the run's folder is still new when it is created.
        let export = d.join("run/export");
        let out = mlp(&["--iterations", "2", "--export-final", export.to_str().unwrap()], &d.join("run"));
        assert!(export.join("w3.npy").is_file() && d.join("run/summary.json").is_file());
        (out, 0, String::new())
    }},
    Case { name: "resume of a file", run: |d| {
        fs::write(d.join("config.json"), b"{}").unwrap();
        (nndl().arg("resume").arg(d.join("config.json")).output().unwrap(), 1, err(format!("{} is a file; give the run's folder", d.join("config.json").display())))
    }},
    Case { name: "resume of an empty folder nndl never wrote", run: |d| {
        (nndl().arg("resume").arg(&**d).output().unwrap(), 1, err(format!("{} is empty: not an nndl run folder", d.display())))
    }},
    Case { name: "eval of an XOR run", run: |d| {
        let run = d.join("xor");
        assert!(nndl().args(["xor", "--quiet", "--out"]).arg(&run).status().unwrap().success());
        (nndl().arg("eval").arg(&run).output().unwrap(), 1, err(format!("{} is an XOR run: `nndl eval` evaluates MNIST runs (mlp, cnn)", run.display())))
    }},
    Case { name: "eval of a folder of runs", run: |d| {
        fake_run(&d.join("seed-0"), true);
        fake_run(&d.join("seed-1"), true);
        (nndl().arg("eval").arg(&**d).output().unwrap(), 1, err(format!("{} holds 2 runs, not one: evaluate each, as `nndl eval {}`", d.display(), d.join("seed-0").display())))
    }},
    Case { name: "a bad flag over config.json names the flag", run: |d| {
        let cfg = d.join("config.json");
        fs::write(&cfg, default_config().to_string()).unwrap();
        (mlp(&["--config", cfg.to_str().unwrap(), "--batch-size", "0"], &d.join("run")), 1, err("invalid --batch-size 0: must be between 1 and 55000"))
    }},
    Case { name: "a misspelt key in config.json", run: |d| {
        let cfg = d.join("config.json");
        let mut v = default_config();
        v["learning_rate"] = serde_json::json!(0.1);
        fs::write(&cfg, v.to_string()).unwrap();
        let out = mlp(&["--config", cfg.to_str().unwrap()], &d.join("run"));
        let line = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert!(line.starts_with(&err(format!("config {} is not a valid nndl config: unknown field `learning_rate`", cfg.display()))), "{line}");
        (out, 1, line)
    }},
    Case { name: "--preset beside --config", run: |d| {
        let cfg = d.join("config.json");
        fs::write(&cfg, default_config().to_string()).unwrap();
        (mlp(&["--config", cfg.to_str().unwrap(), "--preset", "modern"], &d.join("run")), 1,
            err("--preset cannot be combined with --config: the file's preset and settings are used; drop --preset"))
    }},
    Case { name: "resume of a finished run", run: |d| {
        fake_run(d, true);
        (nndl().arg("resume").arg(&**d).output().unwrap(), 1, err(format!("{} is finished (it has summary.json); nothing to resume", d.display())))
    }},
    Case { name: "resume of a folder nndl did not write", run: |d| {
        fs::write(d.join("notes.txt"), "kept").unwrap();
        let out = nndl().arg("resume").arg(&**d).output().unwrap();
        kept(&d.join("notes.txt"));
        (out, 1, err(format!("{} is not an nndl run folder (no .nndl-run)", d.display())))
    }},
    Case { name: "resume of a --seeds folder", run: |d| {
        for k in 0..4 {
            fake_run(&d.join(format!("seed-{k}")), false);
        }
        (nndl().arg("resume").arg(&**d).output().unwrap(), 1,
            err(format!("{} holds runs (seed-0, seed-1, seed-2, ...) but is not a run's folder itself: rerun the `--seeds` command that made them to continue them all, or resume one of them", d.display())))
    }},
    Case { name: "resume of a sweep's folder", run: |d| {
        fs::write(d.join(".nndl-sweep"), "{}").unwrap();
        fs::write(d.join("sweep.json"), "{}").unwrap();
        (nndl().arg("resume").arg(&**d).output().unwrap(), 1,
            err(format!("{} is a sweep's folder, not a run's: rerun its `nndl sweep SPEC --out` command to continue its trials, or resume one trial's folder", d.display())))
    }},
    Case { name: "a sweep into a --seeds folder", run: |d| {
        fake_run(&d.join("seeds/seed-0"), true);
        fs::write(d.join("spec.toml"), "model = \"mlp\"\niterations = 2\nseed = [0, 1]\n").unwrap();
        let out = nndl().arg("sweep").arg(d.join("spec.toml")).args(["--device", "cpu", "--threads", "1", "--quiet", "--data"]).arg(mnist_dir())
            .arg("--out").arg(d.join("seeds")).output().unwrap();
        (out, 1, err(format!("{} holds runs of its own (seed-0: a --seeds folder), not a sweep's; choose another --out", d.join("seeds").display())))
    }},
    Case { name: "resume of a missing folder", run: |d| {
        (nndl().arg("resume").arg(d.join("nope")).output().unwrap(), 1, err(format!("{} does not exist", d.join("nope").display())))
    }},
    Case { name: "resume from a corrupt checkpoint", run: |d| {
        fake_run(d, false);
        fs::write(d.join("config.json"), default_config().to_string()).unwrap();
        fs::write(d.join("checkpoint.safetensors"), b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage").unwrap();
        let out = nndl().arg("resume").arg(&**d).output().unwrap();
        let line = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert!(line.starts_with(&err(format!("{} is not a valid safetensors file", d.join("checkpoint.safetensors").display()))), "{line}");
        // In words, not the library's enum names (InvalidHeaderDeserialization here).
        assert!(line.ends_with("its header is not safetensors' JSON"), "{line}");
        (out, 1, line)
    }},
    Case { name: "resume from a checkpoint whose tensors were damaged", run: |d| {
        // Its header intact (a flipped block in the middle of the data, as a bad disk or copy
        // leaves it): the checksum refuses what would otherwise resume with other weights.
        let (out, path) = resume_damaged(d, |bytes| {
            let middle = bytes.len() / 2;
            bytes[middle..middle + 64].iter_mut().for_each(|b| *b ^= 0xff);
        });
        (out, 1, err(format!("{} is not a valid safetensors file: its tensors do not match the checksum its header records (damaged on disk or in a copy)", path.display())))
    }},
    Case { name: "resume from a checkpoint whose header was damaged", run: |d| {
        // A digit of the batch order's random state changed, the file's length and JSON intact:
        // the run would otherwise resume on other batches, silently.
        let (out, path) = resume_damaged(d, |bytes| {
            let at = bytes.windows(12).position(|w| w == b"rng_state\\\":").unwrap() + 12;
            bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
        });
        (out, 1, err(format!("{} is not a valid safetensors file: its header does not match the checksum it records (damaged on disk or in a copy)", path.display())))
    }},
    Case { name: "eval of a run without weights", run: |d| {
        // Interrupted: a checkpoint, no summary (not a finished run that lost its weights).
        fake_run(d, false);
        fs::write(d.join("config.json"), default_config().to_string()).unwrap();
        fs::write(d.join("checkpoint.safetensors"), b"not read").unwrap();
        (nndl().arg("eval").arg(&**d).output().unwrap(), 1,
            err(format!("{0} has no model.safetensors: the run has not finished (if it is not running, continue it with `nndl resume {0}`)", d.display())))
    }},
    Case { name: "free space below what the run writes", run: |d| {
        let mnt = d.join("small");
        fs::create_dir(&mnt).unwrap();
        assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&mnt).status().unwrap().success(), "tests run as root and may mount a tmpfs");
        let out = mlp(&[], &mnt.join("run"));
        let _ = std::process::Command::new("umount").arg(&mnt).status();
        let line = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert!(line.starts_with(&err(format!("not enough free space for {}: about ", mnt.join("run").display()))) && line.ends_with("MB free"), "{line}");
        (out, 1, line)
    }},
    Case { name: "free space below what a reproduction writes", run: |d| {
        let mnt = d.join("small-reproduce");
        fs::create_dir(&mnt).unwrap();
        assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&mnt).status().unwrap().success());
        let out = nndl().args(["reproduce", "--quick", "--only", "mlp", "--device", "cpu", "--threads", "1", "--quiet", "--data"]).arg(crate::util::mnist_dir())
            .arg("--out").arg(mnt.join("r")).output().unwrap();
        let made = mnt.join("r").exists();
        let _ = std::process::Command::new("umount").arg(&mnt).status();
        assert!(!made, "refused before the folder is made");
        let line = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert!(line.starts_with(&err(format!("not enough free space for {}: about ", mnt.join("r").display()))), "{line}");
        (out, 1, line)
    }},
    Case { name: "a resumed reproduction needs room for its unfinished stages only", run: |d| {
        // Its finished MLP stage (about 3 MB) is in place; a new one would need about 9 MB.
        let mnt = d.join("resume-reproduce");
        fs::create_dir(&mnt).unwrap();
        assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"]).arg(&mnt).status().unwrap().success());
        let reproduce = |out: &Path| nndl().args(["reproduce", "--quick", "--only", "mlp", "--device", "cpu", "--threads", "1", "--quiet", "--data"]).arg(crate::util::mnist_dir())
            .arg("--out").arg(out).output().unwrap();
        let too_big = reproduce(&mnt.join("fresh"));
        let first = reproduce(&d.join("r"));
        fs::remove_file(d.join("r/summary.json")).unwrap();
        let copied = std::process::Command::new("cp").arg("-a").arg(d.join("r")).arg(&mnt).status().unwrap().success();
        let out = nndl().arg("resume").arg(mnt.join("r")).arg("--quiet").output().unwrap();
        let finished = mnt.join("r/summary.json").is_file();
        let _ = std::process::Command::new("umount").arg(&mnt).status();
        assert!(String::from_utf8_lossy(&too_big.stderr).contains("not enough free space") && first.status.success() && copied && finished);
        (out, 0, String::new())
    }},
    Case { name: "a resumed run needs room for what it has yet to write", run: |d| {
        // Stopped before its summary (as a full disk stops it), its checkpoint, weights and
        // figures (about 2.8 MB) in place: a new run would need about 9 MB, the resume about 6.
        let mnt = d.join("resume-space");
        fs::create_dir(&mnt).unwrap();
        assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=10m", "tmpfs"]).arg(&mnt).status().unwrap().success());
        let first = mlp(&["--iterations", "20", "--eval-every", "10"], &d.join("run"));
        fs::remove_file(d.join("run/summary.json")).unwrap();
        let copied = std::process::Command::new("cp").arg("-a").arg(d.join("run")).arg(&mnt).status().unwrap().success();
        let too_big = mlp(&["--iterations", "20", "--eval-every", "10"], &mnt.join("fresh"));
        let out = nndl().arg("resume").arg(mnt.join("run")).args(["--quiet", "--data"]).arg(mnist_dir()).output().unwrap();
        let finished = mnt.join("run/summary.json").is_file();
        let _ = std::process::Command::new("umount").arg(&mnt).status();
        assert!(first.status.success() && copied && finished);
        assert!(String::from_utf8_lossy(&too_big.stderr).contains("not enough free space"), "{}", String::from_utf8_lossy(&too_big.stderr));
        (out, 0, String::new())
    }},
    Case { name: "a shard needs room for its own trials only", run: |d| {
        // Ten MLP trials would need about 90 MB; shard 1 of 10 trains one (about 9 MB).
        let mnt = d.join("shard-space");
        fs::create_dir(&mnt).unwrap();
        assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=12m", "tmpfs"]).arg(&mnt).status().unwrap().success());
        let spec = d.join("spec.toml");
        fs::write(&spec, "model = \"mlp\"\niterations = 2\nseed = { from = 0, to = 9 }\n").unwrap();
        let out = nndl().arg("sweep").arg(&spec).args(["--shard", "1/10", "--device", "cpu", "--threads", "1", "--quiet", "--data"]).arg(mnist_dir())
            .arg("--out").arg(mnt.join("sweep")).output().unwrap();
        let done = mnt.join("sweep/seed=0/summary.json").is_file();
        let _ = std::process::Command::new("umount").arg(&mnt).status();
        assert!(done, "{}", String::from_utf8_lossy(&out.stderr));
        (out, 0, String::new())
    }},
    Case { name: "a sweep spec read from an endless device", run: |d| {
        // /dev/zero reports no size: read at most a byte past the limit, under a memory cap.
        let script = format!("ulimit -v 4000000; exec {} sweep /dev/zero --dry-run --out {}", env!("CARGO_BIN_EXE_nndl"), d.join("sweep").display());
        let out = std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
        (out, 1, err("/dev/zero holds more than 1048576 bytes; a sweep spec is at most that"))
    }},
    Case { name: "a --config read from an endless device", run: |d| {
        let script = format!("ulimit -v 4000000; exec {} mlp --config /dev/zero --out {}", env!("CARGO_BIN_EXE_nndl"), d.join("run").display());
        let out = std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
        (out, 1, err("/dev/zero holds more than 1048576 bytes; a config is at most that"))
    }},
    Case { name: "--seeds into a folder of other files", run: |d| {
        fs::write(d.join("notes.txt"), "kept").unwrap();
        let out = mlp(&["--seeds", "0..1", "--iterations", "2"], d);
        kept(&d.join("notes.txt"));
        assert!(!d.join("seed-0").exists());
        (out, 1, err(format!("{} holds files nndl did not write (notes.txt); choose another --out", d.display())))
    }},
    Case { name: "--seeds into a run's folder", run: |d| {
        let run = d.join("run");
        fake_run(&run, true);
        let out = mlp(&["--seeds", "0..1", "--iterations", "2"], &run);
        assert!(!run.join("seed-0").exists());
        (out, 1, err(format!("{} is a run's folder, not one for --seeds; choose another --out", run.display())))
    }},
    Case { name: "a pack member's full disk stops that member only", run: |d| {
        // seed-1 is a 256 KB tmpfs: its config and metrics fit, its 2 MB checkpoint does not.
        // Its neighbours in the pack finish; the error names seed 1 and its file only.
        let seeds = d.join("seeds");
        fs::create_dir_all(seeds.join("seed-1")).unwrap();
        assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"]).arg(seeds.join("seed-1")).status().unwrap().success());
        let out = mlp(&["--seeds", "0..2", "--iterations", "2"], &seeds);
        let finished: Vec<bool> = (0..3).map(|k| seeds.join(format!("seed-{k}/summary.json")).is_file()).collect();
        let _ = std::process::Command::new("umount").arg(seeds.join("seed-1")).status();
        assert_eq!(finished, [true, false, true]);
        (out, 1, err(format!("1 of 3 seeds failed: seed 1: no space left on device writing {} (it stopped alone; once mended, the same command continues it)",
            seeds.join("seed-1/checkpoint.safetensors").display())))
    }},
    Case { name: "--force would delete the MNIST files the run reads", run: |d| {
        let data = d.join("runs/mnist");
        fs::create_dir_all(&data).unwrap();
        for f in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
            fs::copy(mnist_dir().join(f), data.join(f)).unwrap();
        }
        let out = nndl().args(["mlp", "--device", "cpu", "--quiet", "--iterations", "1", "--force", "--data"]).arg(&data).arg("--out").arg(d.join("runs")).output().unwrap();
        assert_eq!(fs::read_dir(&data).unwrap().count(), 4, "MNIST is kept");
        (out, 1, err(format!("--force would delete {}, which holds MNIST ({}); choose another --out", d.join("runs").display(), data.join("t10k-images-idx3-ubyte.gz").display())))
    }},
    Case { name: "--force of the folder the command runs in", run: |d| {
        // It would go on in the folder it deletes (`x/.` and `x/../x` from outside are fine).
        fake_run(&d.join("run"), true);
        let out = nndl().current_dir(d.join("run")).args(["mlp", "--device", "cpu", "--quiet", "--force", "--out", ".", "--data"]).arg(mnist_dir()).output().unwrap();
        kept(&d.join("run/summary.json"));
        (out, 1, err("--force cannot replace .: the command runs inside it; run it from another folder"))
    }},
    Case { name: "--force of a symbolic link to a run", run: |d| {
        fake_run(&d.join("run"), true);
        std::os::unix::fs::symlink(d.join("run"), d.join("link")).unwrap();
        let out = mlp(&["--force"], &d.join("link"));
        kept(&d.join("run/summary.json"));
        assert!(fs::symlink_metadata(d.join("link")).unwrap().file_type().is_symlink(), "the link is kept");
        (out, 1, err(format!("--force cannot replace {}: it is a symbolic link; name the folder it points to ({})", d.join("link").display(), fs::canonicalize(d.join("run")).unwrap().display())))
    }},
    Case { name: "--force whose new folder cannot be made puts the old run back", run: |d| {
        // A file system out of inodes but one (for the lock file): the old run moved aside, the
        // new folder cannot be made, and the old run goes back where it was.
        let mnt = d.join("inodes");
        fs::create_dir(&mnt).unwrap();
        assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=30m,nr_inodes=32", "tmpfs"]).arg(&mnt).status().unwrap().success());
        let run = mnt.join("r");
        let first = mlp(&["--iterations", "2"], &run);
        let fillers = (0..).take_while(|k| fs::File::create(mnt.join(format!("fill-{k}"))).is_ok()).count();
        fs::remove_file(mnt.join("fill-0")).unwrap();
        let out = mlp(&["--iterations", "2", "--force", "--lr", "0.01"], &run);
        let back = run.join("summary.json").is_file();
        let aside = fs::read_dir(&mnt).unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with(".r.replaced-"));
        let _ = std::process::Command::new("umount").arg(&mnt).status();
        assert!(first.status.success() && fillers > 0 && back && !aside, "old run back: {back}; still aside: {aside}");
        (out, 1, err(format!("cannot create output folder {0}: No space left on device (os error 28); the old run is back in {0}, unchanged", run.display())))
    }},
    Case { name: "--force whose old run cannot be deleted goes on, naming where it is", run: |d| {
        // An immutable file in the old run: the new run is made and trains; the old one stays
        // moved aside, named, and a later --force removes it once it can.
        let run = d.join("run");
        fake_run(&run, true);
        let chattr = |flag: &str, file: &Path| assert!(std::process::Command::new("chattr").arg(flag).arg(file).status().unwrap().success());
        chattr("+i", &run.join("config.json"));
        let out = mlp(&["--iterations", "2", "--force"], &run);
        let aside = fs::read_dir(&**d).unwrap().flatten().map(|e| e.path()).find(|p| p.file_name().unwrap().to_string_lossy().starts_with(".run.replaced-"));
        let aside = aside.expect("the old run is kept aside");
        chattr("-i", &aside.join("config.json"));
        kept(&aside.join("config.json"));
        assert!(run.join("summary.json").is_file() && fs::read_to_string(run.join("summary.json")).unwrap() != "kept", "the new run finished");
        assert!(mlp(&["--iterations", "2", "--force"], &run).status.success() && !aside.exists(), "the next --force removes it");
        (out, 0, format!("warning: cannot remove the old run moved to {}: Operation not permitted (os error 1); the new run goes on in {}; remove it by hand", aside.display(), run.display()))
    }},
    Case { name: "eval on a full disk prints its result all the same", run: |d| {
        // As in a read-only folder: the evaluation is the result; its files are not written.
        let mnt = d.join("full-eval");
        fs::create_dir(&mnt).unwrap();
        assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"]).arg(&mnt).status().unwrap().success());
        let first = mlp(&["--iterations", "2"], &d.join("run"));
        let copied = std::process::Command::new("cp").arg("-a").arg(d.join("run")).arg(&mnt).status().unwrap().success();
        // Full but for one page, which the lock file takes.
        let mut filler = fs::File::create(mnt.join("filler")).unwrap();
        while std::io::Write::write_all(&mut filler, &[0; 4096]).is_ok() {}
        let len = filler.metadata().unwrap().len();
        filler.set_len(len - len % 4096 - 4096).unwrap();
        drop(filler);
        let run = mnt.join("run");
        let out = nndl().arg("eval").arg(&run).args(["--quiet", "--json", "--data"]).arg(mnist_dir()).output().unwrap();
        let written = run.join("eval.json").exists() || run.join("confusion.png").exists();
        let _ = std::process::Command::new("umount").arg(&mnt).status();
        assert!(first.status.success() && copied && !written);
        assert!(crate::util::json(&out)["test_accuracy"].as_f64().is_some_and(|a| a > 0.0), "the result is printed");
        (out, 0, format!("warning: no space left on device writing {}; the result is printed only", run.join("confusion.png").display()))
    }},
    Case { name: "a full disk while writing --export-steps", run: |d| {
        // The initial export fits, the first step's does not: the run finishes, what the steps'
        // export wrote is removed, and the command fails as a failed --export-final does.
        let mnt = d.join("steps");
        fs::create_dir(&mnt).unwrap();
        assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=1200k", "tmpfs"]).arg(&mnt).status().unwrap().success());
        let out = mlp(&["--iterations", "2", "--export-init", mnt.to_str().unwrap(), "--export-steps", "2"], &d.join("run"));
        let init = mnt.join("w1.npy").is_file() && mnt.join("batches.npy").is_file();
        let steps_left = mnt.join("step-1").exists() || mnt.join("losses.npy").exists();
        let _ = std::process::Command::new("umount").arg(&mnt).status();
        assert!(init && !steps_left && d.join("run/summary.json").is_file(), "init export whole: {init}; steps left: {steps_left}");
        (out, 1, err(format!("the run finished ({}), but its --export-steps into {} failed (what it wrote of the steps is removed; run the export again from the start): no space left on device writing {}",
            d.join("run").display(), mnt.display(), mnt.join("step-1/w1.npy").display())))
    }},
    Case { name: "a full disk while writing", run: |d| {
        let mnt = d.join("full");
        fs::create_dir(&mnt).unwrap();
        assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"]).arg(&mnt).status().unwrap().success());
        let out = mlp(&["--iterations", "2", "--export-final", mnt.to_str().unwrap()], &d.join("run"));
        let _ = std::process::Command::new("umount").arg(&mnt).status();
        // The run itself is whole; only the export failed.
        assert!(d.join("run/summary.json").is_file() && d.join("run/model.safetensors").is_file());
        // The message says the run finished and how to write the export once there is room.
        (out, 1, err(format!("the run finished ({0}), but its --export-final {1} failed (once mended, `nndl resume {0}` writes it): no space left on device writing {2}",
            d.join("run").display(), mnt.display(), mnt.join("w1.npy").display())))
    }},
];

/// The faithful MLP's config.json, as `nndl` writes it (through a short run's folder).
fn default_config() -> serde_json::Value {
    static CONFIG: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    CONFIG.get_or_init(|| {
        let d = tempdir("cfg-source");
        let out = mlp(&["--iterations", "1"], &d.join("run"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&fs::read(d.join("run/config.json")).unwrap()).unwrap()
    }).clone()
}

#[test]
fn bad_inputs_and_faults() {
    assert!(CASES.len() >= 25, "the table holds {} cases", CASES.len());
    let mut failures = Vec::new();
    for case in CASES {
        let dir = tempdir("robust");
        let (out, status, line) = (case.run)(&dir);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if out.status.code() != Some(status) || stderr.trim_end() != line {
            failures.push(format!("{}: status {:?} (want {status})\n  got:  {}\n  want: {line}", case.name, out.status.code(), stderr.trim_end()));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}
