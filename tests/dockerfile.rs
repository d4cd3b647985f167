//! The Dockerfile's text, for what running the image (tests/image.rs) cannot
//! show: base images come only from build arguments with the conventional
//! defaults, the default target is the image, turf and Noslated are built by
//! scripts/real-noslate.sh, and the build context leaves build outputs out.

use std::path::PathBuf;

use noslate_fc::config::OPTIONS;

/// One Dockerfile instruction: keyword (upper case) and its arguments, with
/// comments dropped and `\` continuations joined.
struct Instruction {
    keyword: String,
    args: String,
}

fn read(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                let (keyword, args) = pending.split_once(char::is_whitespace).unwrap_or((&pending, ""));
                out.push(Instruction { keyword: keyword.to_ascii_uppercase(), args: args.trim().to_string() });
                pending.clear();
            }
        }
    }
    assert!(pending.is_empty(), "dangling line continuation");
    out
}

/// The instructions of each stage (from its FROM up to the next FROM).
fn stages(all: &[Instruction]) -> Vec<&[Instruction]> {
    let starts: Vec<usize> = all.iter().enumerate().filter(|(_, i)| i.keyword == "FROM").map(|(n, _)| n).collect();
    starts.iter().enumerate().map(|(k, &s)| &all[s..starts.get(k + 1).copied().unwrap_or(all.len())]).collect()
}

fn default_port() -> &'static str {
    OPTIONS.iter().find(|o| o.env == "SERVER_PORT").expect("SERVER_PORT in OPTIONS").default
}

/// The global `ARG NAME=default` lines (before the first FROM).
fn global_args(all: &[Instruction]) -> Vec<(String, String)> {
    let first_from = all.iter().position(|i| i.keyword == "FROM").unwrap();
    all[..first_from]
        .iter()
        .filter(|i| i.keyword == "ARG")
        .map(|i| {
            let (k, v) = i.args.split_once('=').unwrap_or((&i.args, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// What tests/image.rs cannot see by running the image: where the bases come
/// from (build arguments only, with the conventional defaults, so a machine
/// without a registry passes local ones), that the default target is the
/// image, that turf and Noslated come from the build the tests use, and that
/// Noslate's own base stays available as a target.
#[test]
fn bases_are_build_arguments_and_the_image_is_the_default_target() {
    let text = read("Dockerfile");
    let all = instructions(&text);
    let args = global_args(&all);
    let defaults: Vec<(&str, &str)> = args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        defaults,
        [
            ("RUST_IMAGE", "rust:1-bookworm"),
            ("NODE_BUILD_IMAGE", "node:20-bookworm"),
            ("NODE_IMAGE", "node:20-bookworm-slim"),
            ("NOSLATE_IMAGE", "noslate:0.0.1"),
        ]
    );
    let stages = stages(&all);
    let mut names: Vec<&str> = Vec::new();
    for stage in &stages {
        let (base, name) =
            stage[0].args.split_once(" AS ").unwrap_or_else(|| panic!("unnamed stage: {}", stage[0].args));
        let from_arg = base.strip_prefix("${").and_then(|b| b.strip_suffix('}'));
        assert!(
            from_arg.is_some_and(|a| args.iter().any(|(k, _)| k == a)) || names.contains(&base),
            "FROM {base}: a base image must be a global build argument or an earlier stage"
        );
        names.push(name);
    }
    assert_eq!(names.last(), Some(&"image"), "the image is the last stage, so the default target");
    assert!(names.contains(&"on-noslate"), "the target on Noslate's own base image");

    let noslate = stages.iter().find(|s| s[0].args.ends_with(" AS noslate")).expect("a noslate stage");
    assert!(
        noslate
            .iter()
            .any(|i| i.keyword == "RUN" && i.args.contains("scripts/real-noslate.sh build-into /usr/local/noslate")),
        "turf and Noslated are built by scripts/real-noslate.sh, as for the tests"
    );

    let image = stages.last().unwrap();
    let entrypoints: Vec<&Instruction> = image.iter().filter(|i| i.keyword == "ENTRYPOINT").collect();
    assert_eq!(entrypoints.len(), 1);
    let argv: Vec<String> =
        serde_json::from_str(&entrypoints[0].args).expect("ENTRYPOINT in exec form (a JSON array), so we are PID 1");
    assert_eq!(argv, ["/usr/local/bin/noslate-fc"]);
    assert!(!all.iter().any(|i| i.keyword == "CMD"), "no CMD: it would become arguments of noslate-fc");
    let exposed: Vec<&str> =
        all.iter().filter(|i| i.keyword == "EXPOSE").flat_map(|i| i.args.split_whitespace()).collect();
    assert!(exposed.iter().all(|p| *p == default_port()), "EXPOSE equals the default SERVER_PORT: {exposed:?}");
    assert_eq!(default_port(), "9000", "FC's CAPort convention (docs/fc-contract.md §2)");
}

#[test]
fn dockerignore_keeps_build_outputs_out_of_the_context() {
    let text = read(".dockerignore");
    let entries: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for needed in ["target", "node_modules", ".venv", "fuzz/target", ".git"] {
        assert!(entries.contains(&needed), ".dockerignore lacks {needed}: {entries:?}");
    }
    // The build needs these; an ignore pattern must not drop them.
    for kept in ["Cargo.toml", "Cargo.lock", "src"] {
        assert!(!entries.contains(&kept), ".dockerignore drops {kept}");
    }
}
