//! sshbreak: break-glass SSH access with a FIDO2 security key as the user-certificate authority.
//!
//! The binary (`src/main.rs`) is a thin shell over this library so that integration tests can
//! drive the same code paths.

pub mod audit;
pub mod ca;
pub mod cli;
pub mod commands;
pub mod fsx;
pub mod host;
pub mod inspect;
pub mod policy;
pub mod timefmt;
pub mod token;
pub mod ui;
