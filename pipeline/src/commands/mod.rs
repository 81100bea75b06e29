//! One module per subcommand; each owns its clap arguments and a `run` function.

pub(crate) mod demo;
pub(crate) mod schemas;
pub(crate) mod topics;
