//! What the host may spend on one tenant's module: how large it may be, how long and how much
//! memory compiling it may take, how large the compilation cache may grow. Set by the node's
//! operator in the environment of the process (the shim inherits containerd's), never by a
//! container's spec or annotations, which tenants control; each has a default that suits a node.
//!
//! In the flow: the shim reads them at `create` (module size, before reading the module), the
//! cache at a miss (compile limits, quota); `wasmcell run` reads the same variables.

use std::ffi::OsString;
use std::time::Duration;

/// The largest module the shim reads from an image (bytes, or with a KiB/MiB/GiB suffix).
pub const MAX_MODULE_SIZE_VAR: &str = "WASMCELL_MAX_MODULE_SIZE";
/// How long compiling one module may take (seconds, or with an ms/s/m suffix).
pub const COMPILE_TIMEOUT_VAR: &str = "WASMCELL_COMPILE_TIMEOUT";
/// How much address space the compiler process may use (bytes, or with a KiB/MiB/GiB suffix).
pub const COMPILE_MEMORY_VAR: &str = "WASMCELL_COMPILE_MEMORY";
/// The compilation cache's quota (bytes, or with a KiB/MiB/GiB suffix).
pub const CACHE_MAX_SIZE_VAR: &str = "WASMCELL_CACHE_MAX_SIZE";

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The operator's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest module read from an image, checked before reading it.
    pub max_module_size: u64,
    /// What compiling one module may take.
    pub compile: CompileLimits,
    /// The compilation cache's quota; older entries are evicted past it.
    pub cache_max_size: u64,
}

/// What compiling one module may take; past either, the compiler process is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileLimits {
    /// Wall-clock time, and CPU time (`RLIMIT_CPU`, whole seconds, rounded up).
    pub time: Duration,
    /// Address space of the compiler process (`RLIMIT_AS`).
    pub memory: u64,
}

impl Default for Limits {
    /// 128 MiB modules: the largest real modules (debug builds of big applications) are tens of
    /// MiB, and a module must fit with its compiled code in the workload's memory (256 MiB by
    /// default). 60 s and 2 GiB of compilation: Cranelift compiles such modules in seconds and a
    /// few hundred MiB. A 2 GiB cache holds hundreds of typical artifacts.
    fn default() -> Self {
        Self {
            max_module_size: 128 * MIB,
            compile: CompileLimits { time: Duration::from_secs(60), memory: 2 * GIB },
            cache_max_size: 2 * GIB,
        }
    }
}

/// A limit set to something that is not one.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("Invalid {var}={value:?}: expected a positive size in bytes or with a KiB, MiB or GiB suffix")]
    Size { var: &'static str, value: String },
    #[error("Invalid {var}={value:?}: expected a positive duration in seconds or with an ms, s or m suffix")]
    Duration { var: &'static str, value: String },
}

impl Limits {
    /// The defaults, overridden by the process's environment.
    pub fn from_env() -> Result<Self, LimitError> {
        Self::from_lookup(|var| std::env::var_os(var))
    }

    /// The defaults, overridden by what `lookup` returns for each variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Self, LimitError> {
        let mut limits = Self::default();
        let text = |var: &'static str| lookup(var).filter(|v| !v.is_empty()).map(|v| v.to_string_lossy().into_owned());
        let size = |var: &'static str, default: u64| match text(var) {
            None => Ok(default),
            Some(value) => parse_size(&value).ok_or(LimitError::Size { var, value }),
        };
        limits.max_module_size = size(MAX_MODULE_SIZE_VAR, limits.max_module_size)?;
        limits.compile.memory = size(COMPILE_MEMORY_VAR, limits.compile.memory)?;
        limits.cache_max_size = size(CACHE_MAX_SIZE_VAR, limits.cache_max_size)?;
        if let Some(value) = text(COMPILE_TIMEOUT_VAR) {
            limits.compile.time =
                parse_duration(&value).ok_or(LimitError::Duration { var: COMPILE_TIMEOUT_VAR, value })?;
        }
        Ok(limits)
    }
}

/// `134217728`, `128MiB`, `128M`, `64KiB`, `2GiB`, `2G`: a positive number of bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => KIB,
        "M" | "MiB" => MIB,
        "G" | "GiB" => GIB,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(unit).filter(|&bytes| bytes > 0)
}

/// `60`, `60s`, `500ms`, `2m`: a positive duration.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let duration = match unit.trim() {
        "" | "s" => Duration::from_secs(number),
        "ms" => Duration::from_millis(number),
        "m" => Duration::from_secs(number.checked_mul(60)?),
        _ => return None,
    };
    (!duration.is_zero()).then_some(duration)
}

/// A size as messages say it: `2048 MiB`, or bytes when it is not whole MiB.
pub fn describe_size(bytes: u64) -> String {
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// A duration as messages say it: `60 s`, or milliseconds when it is not whole seconds.
pub fn describe_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse_with_their_units() {
        assert_eq!(parse_size("134217728"), Some(128 * MIB));
        assert_eq!(parse_size("128MiB"), Some(128 * MIB));
        assert_eq!(parse_size("128 M"), Some(128 * MIB));
        assert_eq!(parse_size("64KiB"), Some(64 * KIB));
        assert_eq!(parse_size("2G"), Some(2 * GIB));
        for bad in ["", "0", "0MiB", "-1", "1.5G", "12 parsecs", "MiB", "99999999999999999999GiB"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(parse_duration("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        for bad in ["", "0s", "1h", "-5", "1.5s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(describe_size(2 * GIB), "2048 MiB");
        assert_eq!(describe_size(1000), "1000 bytes");
        assert_eq!(describe_duration(Duration::from_secs(60)), "60 s");
        assert_eq!(describe_duration(Duration::from_millis(1)), "1 ms");
    }

    #[test]
    fn the_environment_overrides_the_defaults_and_bad_values_are_named() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |var: &str| pairs.iter().find(|(k, _)| *k == var).map(|(_, v)| OsString::from(v))
        };
        assert_eq!(Limits::from_lookup(env(&[])).unwrap(), Limits::default());
        let limits = Limits::from_lookup(env(&[
            (MAX_MODULE_SIZE_VAR, "1MiB"),
            (COMPILE_TIMEOUT_VAR, "5s"),
            (COMPILE_MEMORY_VAR, "512M"),
            (CACHE_MAX_SIZE_VAR, "10GiB"),
        ]))
        .unwrap();
        assert_eq!(limits.max_module_size, MIB);
        assert_eq!(limits.compile, CompileLimits { time: Duration::from_secs(5), memory: 512 * MIB });
        assert_eq!(limits.cache_max_size, 10 * GIB);
        let err = Limits::from_lookup(env(&[(MAX_MODULE_SIZE_VAR, "lots")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid WASMCELL_MAX_MODULE_SIZE=\"lots\": expected a positive size in bytes or with a KiB, MiB or GiB suffix"
        );
        assert!(Limits::from_lookup(env(&[(COMPILE_TIMEOUT_VAR, "soon")])).is_err());
    }
}
