//! trails: provision, verify and tear down the Turia Trails platform from one blueprint.

pub mod blueprint;
