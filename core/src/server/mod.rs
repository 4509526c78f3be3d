//! The sans-IO QMP monitor state machine (under construction: see issue 3).
//!
//! The public surface below is the contract the simulator and the io/ shim build against;
//! bodies are being filled in.

pub mod types;

pub use types::*;

use crate::json::Value;

/// Which QEMU the server behaves like.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Dialect {
    /// QEMU 7.2 (default): `exec-oob`, suspend when the queue is full.
    #[default]
    Qemu72,
    /// QEMU 2.12 (the 2018 design): `control.run-oob`, id required with OOB, drop +
    /// `COMMAND_DROPPED` when the queue is full, immediate validation errors.
    Qemu212,
}

/// The type of a command argument, from which the core checks arguments with QEMU's texts.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ArgType {
    /// `str`
    String,
    /// `int` (int64)
    Int,
    /// `uint64` (`Parameter '<path>' expects uint64`)
    UInt,
    /// `number` (any number kind)
    Number,
    /// `bool`
    Bool,
    /// `any`
    Any,
    /// An enum with its values.
    Enum(Vec<String>),
    /// A list of T.
    List(Box<ArgType>),
    /// An object with named members.
    Object(Vec<Member>),
}

/// A named member of an object argument type.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// Member name.
    pub name: String,
    /// Its type.
    pub ty: ArgType,
    /// May be left out.
    pub optional: bool,
}

/// A command the embedder registers.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CommandSpec {
    /// The command name.
    pub name: String,
    /// `allow-oob`
    pub allow_oob: bool,
    /// `allow-preconfig`
    pub allow_preconfig: bool,
    /// False for commands flagged "no success response" (no reply on success).
    pub success_response: bool,
    /// Members of the `arguments` object.
    pub arguments: Vec<Member>,
}

/// The server's configuration; every limit is named here with its default.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// Which QEMU to behave like.
    pub dialect: Dialect,
    /// The `version` object of the greeting and `query-version`.
    pub version: Value,
}
