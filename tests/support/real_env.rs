//! The `export NAME='value'` lines `scripts/real-noslate.sh env` prints, as
//! pairs: shared by the tests (tests/real) and the benchmark harness
//! (benches/e2e/real.rs), which both run the real stack from them.

/// Every `export NAME='value'` line of `text`, in order.
pub fn exports(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}
