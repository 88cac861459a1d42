//! The from-scratch module never imports tch, directly or through another crate module.
use std::path::Path;

/// A line of code (comments dropped) that names the tch crate.
fn imports_tch(line: &str) -> bool {
    let code = line.split("//").next().unwrap();
    code.contains("tch::") || code.contains("use tch") || code.contains("extern crate tch")
}

#[test]
fn scratch_never_imports_tch() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/scratch");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            assert!(!imports_tch(line), "{}:{} imports tch: {line}", path.display(), n + 1);
            let code = line.split("//").next().unwrap();
            // Crate modules it may use: itself and the pure RNG.
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + 7..];
                assert!(rest.starts_with("rng") || rest.starts_with("scratch"), "{}:{} uses {rest}", path.display(), n + 1);
            }
        }
        checked += 1;
    }
    assert!(checked >= 3, "expected mod.rs, xor.rs and bptt.rs, saw {checked} files");
    // And the RNG it leans on is pure too.
    let rng = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/rng.rs")).unwrap();
    assert!(!rng.lines().any(imports_tch));
    assert!(imports_tch("use tch::Tensor;") && !imports_tch("// the batch order"));
}

/// Every `unsafe` block or function in src/ has a `SAFETY:` comment on one of the three lines above
/// (or on its own line), saying why it is sound.
#[test]
fn every_unsafe_block_says_why() {
    let mut missing = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (n, line) in lines.iter().enumerate() {
                let code = line.split("//").next().unwrap();
                let is_block = code.contains("unsafe {") || code.contains("unsafe fn");
                let justified = lines[n.saturating_sub(3)..=n].iter().any(|l| l.contains("SAFETY"));
                if is_block && !justified {
                    missing.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(missing.is_empty(), "unsafe without a SAFETY comment:\n{}", missing.join("\n"));
}
