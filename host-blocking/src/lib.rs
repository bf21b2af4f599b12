//! Blocking host-side library for the OpenMV cam protocol: frame image
//! conversion ([`image`]) and firmware symbol lookup ([`symbols`]).

pub mod image;
pub mod symbols;
