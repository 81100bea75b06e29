//! Small helpers for the child processes the services run as.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::HarnessError;

/// A loopback port nobody listens on right now.
pub(crate) fn free_port() -> Result<u16, HarnessError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Finds `program` on `PATH` or in the extra directories.
pub(crate) fn find_program(program: &str, extra_dirs: &[PathBuf]) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .iter()
        .chain(extra_dirs)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Runs a command to completion; its output becomes the error when it fails.
pub(crate) fn run_checked(command: &mut Command) -> Result<String, HarnessError> {
    let shown = format!("{command:?}");
    let output = command.output().map_err(|source| HarnessError::Spawn {
        command: shown.clone(),
        source,
    })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(HarnessError::CommandFailed {
            command: shown,
            output: text,
        })
    }
}

/// The last lines of a log file, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
