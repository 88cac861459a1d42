//! The speed routes' A/B switches in the environment (README, under Commands). Each is read
//! where its route is chosen; `check` runs once at start, so that a mistyped value is one clear
//! error instead of a silent default. An empty value counts as unset.
use anyhow::{bail, Result};

/// Every switch and the values it takes.
pub const SWITCHES: [(&str, &[&str]); 6] = [
    ("NNDL_CNN_LAYOUT", &["nchw", "nhwc"]),
    ("NNDL_CNN_BIAS", &["conv", "pool"]),
    ("NNDL_PACK_STREAMS", &["on", "off"]),
    ("NNDL_PACK_WEIGHTS", &["out-in", "in-out"]),
    ("NNDL_EVAL_OVERLAP", &["on", "off", "fixed"]),
    ("NNDL_OVERLAP_START", &["on", "off"]),
];

/// The switches that take a whole number, with its least and greatest values.
pub const NUMBER_SWITCHES: [(&str, u64, u64); 1] = [("NNDL_PACK_STACK", 1, 10_000)];

/// Fails on the first switch set to a value it does not take.
pub fn check() -> Result<()> {
    // A value that is not UTF-8 reads as its lossy text, which no switch takes: an error, not unset.
    check_with(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
}

fn check_with(value_of: impl Fn(&str) -> Option<String>) -> Result<()> {
    for (name, values) in SWITCHES {
        match value_of(name) {
            Some(v) if !v.is_empty() && !values.contains(&v.as_str()) => bail!("{name}={v:?}: expected {}", values.join(" or ")),
            _ => {}
        }
    }
    for (name, least, most) in NUMBER_SWITCHES {
        match value_of(name) {
            Some(v) if !v.is_empty() && !v.parse::<u64>().is_ok_and(|n| (least..=most).contains(&n)) => {
                bail!("{name}={v:?}: expected a whole number from {least} to {most}")
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_with;

    fn with(name: &'static str, value: &'static str) -> impl Fn(&str) -> Option<String> {
        move |n| (n == name).then(|| value.to_string())
    }

    #[test]
    fn known_values_and_empty_ones_pass_and_others_are_named() {
        assert!(check_with(|_| None).is_ok());
        assert!(check_with(with("NNDL_PACK_STREAMS", "off")).is_ok());
        assert!(check_with(with("NNDL_CNN_LAYOUT", "")).is_ok());
        let e = check_with(with("NNDL_PACK_STREAMS", "yes")).unwrap_err().to_string();
        assert_eq!(e, "NNDL_PACK_STREAMS=\"yes\": expected on or off");
        assert!(check_with(with("NNDL_CNN_LAYOUT", "NHWC")).is_err());
    }

    #[test]
    fn number_switches_take_whole_numbers_in_their_bounds() {
        assert!(check_with(with("NNDL_PACK_STACK", "5")).is_ok());
        assert!(check_with(with("NNDL_PACK_STACK", "")).is_ok());
        for bad in ["0", "-2", "2.5", "five", "10001"] {
            let e = check_with(with("NNDL_PACK_STACK", bad)).unwrap_err().to_string();
            assert_eq!(e, format!("NNDL_PACK_STACK={bad:?}: expected a whole number from 1 to 10000"));
        }
    }
}
