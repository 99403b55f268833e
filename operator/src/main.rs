//! The `concoord-operator` binary: parse, start tokio, run, print one line on error.

use std::process::ExitCode;

fn main() -> ExitCode {
    match concoord_operator::generate::crd_yaml() {
        Ok(y) => {
            print!("{y}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
