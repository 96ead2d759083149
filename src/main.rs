//! The `refpoint` binary.

use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REFPOINT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = refpoint::cli::Cli::parse();
    let code = refpoint::cli::run(cli);
    // `refpoint bench` runs refpoint commands as children and reads their
    // peak RSS (VmHWM, bytes) from this file.
    if let Some(path) = std::env::var_os("REFPOINT_PEAK_RSS_FILE") {
        let _ = std::fs::write(path, refpoint::cli::peak_rss_bytes().to_string());
    }
    std::process::exit(code);
}
