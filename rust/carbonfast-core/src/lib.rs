//! carbonfast-core: hardware energy counters read with almost no overhead.
//!
//! Sources discover domains and read raw counters; a [`Meter`] feeds every reading through a
//! wrap-aware [`Counter`] and returns [`Snapshot`]s of cumulative energy. No Python here.

pub mod attribution;
pub mod baseline;
pub mod clock;
pub mod counter;
pub mod cputime;
pub mod deferred;
pub mod domain;
pub mod error;
pub mod gpu_share;
pub mod hostinfo;
pub mod meter;
pub mod reaper;
pub mod refresh;
pub mod sampler;
pub mod select;
pub mod source;
pub mod tally;
pub mod tdp;
pub mod threads;

pub use counter::Counter;
pub use cputime::Scope;
pub use deferred::{Deferred, EdgeSnapshot};
pub use domain::{Domain, DomainKind, Estimate, Part, Reading, Role};
pub use error::{Error, Result};
pub use gpu_share::GpuShare;
pub use meter::{DiscoverConfig, Meter, Snapshot, Window};
pub use sampler::{Sampler, SamplerConfig, SamplerStats};
pub use select::{PathReport, ProblemReport, RaplPath, RaplRoots};
pub use source::estimate::EstimateConfig;
