//! The `devicepass` binary: parse arguments, load configuration, set up
//! logging, run the command. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use devicepass::cli::{Cli, Command};
use devicepass::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The checkpassword and healthcheck clients run inside other programs
    // (Dovecot, a container runtime): they need no service configuration.
    if let Some(code) = cli
        .command
        .as_ref()
        .and_then(devicepass::cli::run_without_config)
    {
        return code;
    }
    let loaded = match Config::load(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprint!("devicepass: {errors}");
            return ExitCode::from(2);
        }
    };
    devicepass::telemetry::init(loaded.config.log_format, &loaded.config.log_level);
    for warning in &loaded.warnings {
        tracing::warn!(setting = %warning, "configuration warning");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("devicepass: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    match runtime.block_on(devicepass::cli::run(command, loaded.config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("devicepass: {e:#}");
            ExitCode::FAILURE
        }
    }
}
