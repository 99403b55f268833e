//! The `concoord` binary: parse, start tokio, run, print one line on error.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Before anything can open a TLS connection (the API server, Route53, EC2): see tls.rs.
    concoord::tls::install_crypto_provider();
    // A replica's object interpreter runs as this binary with one argument (sandbox/worker.rs).
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(
            concoord::object::sandbox::worker::SUBCOMMAND,
        ))
    {
        return concoord::object::sandbox::worker::serve();
    }
    let cli = concoord::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(concoord::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // `concoord lock ... -- COMMAND` exits as its command did.
        Err(concoord::cli::CliError::ChildExit(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
