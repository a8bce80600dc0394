//! trails: provision, verify and tear down the Turia Trails platform from one blueprint.

pub mod blueprint;
pub mod graph;
pub mod resources;
pub mod cli;
pub mod plan;
pub mod state;
