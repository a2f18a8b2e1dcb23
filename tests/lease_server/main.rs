//! The Lease server stand-in as a program, for the e2e script: `cargo run --example lease-server -- --listen
//! 127.0.0.1:0 --ca-out ca.pem --token A --token B`. Prints `url=<https URL>` and `control=<http URL>`, one a line,
//! writes its CA to `--ca-out`, and serves until killed. Faults at run time through the control URL (see
//! `server.rs`, `control`).

#[path = "server.rs"]
mod server;

use std::io::Write;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut ca_out, mut tokens) = ("127.0.0.1:0".to_owned(), None, Vec::new());
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--listen" => listen = value,
            "--ca-out" => ca_out = Some(value),
            "--token" => tokens.push(value),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    let Some(ca_out) = ca_out else {
        usage("--ca-out is required")
    };
    if tokens.is_empty() {
        usage("at least one --token is required");
    }
    let addr = listen.parse().unwrap_or_else(|_| usage("--listen: ip:port"));
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let server = server::LeaseServer::start_on(addr, &tokens).await;
    if let Err(e) = std::fs::write(&ca_out, &server.ca_pem) {
        usage(&format!("cannot write {ca_out}: {e}"));
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "url={}\ncontrol={}", server.url, server.control_url);
    let _ = out.flush();
    let _ = tokio::signal::ctrl_c().await;
}

fn usage(why: &str) -> ! {
    eprintln!("lease-server: {why}\nusage: lease-server --ca-out PATH --token T [--token T2] [--listen 127.0.0.1:0]");
    std::process::exit(2)
}
