//! trails: provision, verify and tear down the Turia Trails platform from one blueprint.

pub mod blueprint;
pub mod cli;
pub mod cost;
pub mod engine;
pub mod graph;
pub mod ingest;
pub mod kafkatls;
pub mod pgtls;
pub mod plan;
pub mod policy;
pub mod providers;
pub mod render;
pub mod resources;
pub mod state;
pub mod verify;

/// An error with every cause behind it, `outer: inner: root`: SDK and driver errors put what
/// really went wrong in their sources.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}
