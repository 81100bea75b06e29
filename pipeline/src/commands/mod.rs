//! One module per subcommand; each owns its clap arguments and a `run` function.

pub(crate) mod actuate;
pub(crate) mod approve;
pub(crate) mod audit;
pub(crate) mod broker;
pub(crate) mod collect;
pub(crate) mod demo;
pub(crate) mod fleet;
pub(crate) mod generate;
pub(crate) mod publish;
pub(crate) mod run;
pub(crate) mod schemas;
pub(crate) mod sql;
pub(crate) mod topics;
