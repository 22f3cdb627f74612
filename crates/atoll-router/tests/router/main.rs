//! The router against real HTTP cells on loopback (small hyper servers in this process)
//! and, where routing by shard matters, real sandbox islands. One test binary; modules
//! by feature.

mod common;
mod endpoints;
mod learning;
mod limits;
mod routing;
