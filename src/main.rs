//! The `noslate-fc` binary: parse configuration, run the event loop.

use noslate_fc::config::{help_text, Command, Config};
use noslate_fc::server::Server;

fn main() {
    let command = match Config::from_args(std::env::args().skip(1), |k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("noslate-fc: {e}");
            std::process::exit(2);
        }
    };
    let cfg = match command {
        Command::Help => {
            print!("{}", help_text());
            return;
        }
        Command::Version => {
            println!("noslate-fc {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Command::Run(cfg) => *cfg,
    };
    for warning in &cfg.warnings {
        eprintln!("noslate-fc: warning: {warning}");
    }
    let listen = cfg.listen;
    let mut server = match Server::new(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("noslate-fc: cannot start on {listen}: {e}");
            std::process::exit(1);
        }
    };
    if let Some(addr) = server.local_addr() {
        eprintln!("noslate-fc: listening on {addr}");
    }
    std::process::exit(server.run());
}
