//! trails: provision, verify and tear down the Turia Trails platform from one blueprint.

pub mod blueprint;
pub mod cli;
pub mod engine;
pub mod graph;
pub mod ingest;
pub mod plan;
pub mod providers;
pub mod resources;
pub mod state;
pub mod verify;
