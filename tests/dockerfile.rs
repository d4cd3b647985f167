//! The Dockerfile's structure (no Docker engine runs on the development
//! machines): two stages, a locked release build, the Noslate base image
//! chosen by `NOSLATE_VERSION`, the ENTRYPOINT running the binary the last
//! stage installs, and EXPOSE equal to noslate-fc's default port.

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

#[test]
fn dockerfile_structure() {
    let text = read("Dockerfile");
    let all = instructions(&text);
    let stages = stages(&all);
    assert_eq!(stages.len(), 2, "a build stage and the runtime stage");

    // Global ARG: only ARGs before the first FROM may be used in a FROM.
    let first_from = all.iter().position(|i| i.keyword == "FROM").unwrap();
    assert!(
        all[..first_from].iter().any(|i| i.keyword == "ARG" && i.args.split('=').next() == Some("NOSLATE_VERSION")),
        "ARG NOSLATE_VERSION must come before the first FROM to be usable in FROM"
    );

    let build = stages[0];
    assert_eq!(build[0].args, "rust:1-bookworm AS build");
    assert!(
        build.iter().any(|i| i.keyword == "RUN" && i.args.contains("cargo build --release --locked")),
        "the build stage runs a locked release build"
    );

    let run = stages[1];
    assert_eq!(run[0].args, "noslate:${NOSLATE_VERSION:-0.0.1}");
    let copy = run
        .iter()
        .find(|i| i.keyword == "COPY" && i.args.starts_with("--from=build "))
        .expect("the runtime stage copies the binary from the build stage");
    let paths: Vec<&str> = copy.args.split_whitespace().skip(1).collect();
    assert_eq!(paths.len(), 2, "COPY --from=build <src> <dest>: {}", copy.args);
    assert!(paths[0].ends_with("/release/noslate-fc"), "copies the release binary: {}", paths[0]);
    let installed = paths[1];
    assert_eq!(installed, "/usr/local/bin/noslate-fc");

    let entrypoints: Vec<&Instruction> = run.iter().filter(|i| i.keyword == "ENTRYPOINT").collect();
    assert_eq!(entrypoints.len(), 1);
    let argv: Vec<String> =
        serde_json::from_str(&entrypoints[0].args).expect("ENTRYPOINT in exec form (a JSON array), so we are PID 1");
    assert_eq!(argv, [installed], "the ENTRYPOINT runs the installed binary");
    assert!(!run.iter().any(|i| i.keyword == "CMD"), "no CMD: it would become arguments of noslate-fc");

    let exposed: Vec<&str> =
        run.iter().filter(|i| i.keyword == "EXPOSE").flat_map(|i| i.args.split_whitespace()).collect();
    assert_eq!(exposed, [default_port()], "EXPOSE equals the default SERVER_PORT");
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
