//! Running the `opsloop` binary from the integration tests.

use std::process::{Command, Output};

/// Runs `opsloop args...` to completion off the async runtime's threads.
pub(crate) async fn opsloop(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_opsloop"))
            .args(&args)
            .env("OPSLOOP_LOG", "info")
            .env("NO_COLOR", "1")
            .output()
            .expect("opsloop runs")
    })
    .await
    .expect("joined")
}

/// The stdout of a run that must have succeeded (its stderr in the panic otherwise).
pub(crate) fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "opsloop failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
