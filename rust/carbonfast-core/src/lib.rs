//! carbonfast-core: hardware energy counters read with almost no overhead.
//!
//! Sources discover domains and read raw counters; a [`Meter`] feeds every reading through a
//! wrap-aware [`Counter`] and returns [`Snapshot`]s of cumulative energy. No Python here.

pub mod baseline;
pub mod clock;
pub mod counter;
pub mod domain;
pub mod error;
pub mod meter;
pub mod source;

pub use counter::Counter;
pub use domain::{Domain, DomainKind};
pub use error::{Error, Result};
pub use meter::{Meter, Snapshot, Window};
