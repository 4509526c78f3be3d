//! The command table: the core's built-in commands and the embedder's registered ones.
//!
//! Lookup is by the raw name bytes of the request (a name can be any JSON string).

use std::collections::BTreeMap;

use super::command_name::CommandName;
use super::misuse::ApiMisuse;
use super::schema::{ArgType, CommandSpec, Member};

/// Commands the core answers itself when they are dispatched.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Builtin {
    QmpCapabilities,
    QueryVersion,
    QueryCommands,
    Getfd,
    Closefd,
    AddFd,
    RemoveFd,
    QueryFdsets,
}

#[derive(Debug)]
pub(crate) struct Entry {
    /// `spec.name`, shared with every call of the command.
    pub(crate) name: CommandName,
    pub(crate) spec: CommandSpec,
    pub(crate) builtin: Option<Builtin>,
}

/// All commands of command mode, in registration order.
#[derive(Debug)]
pub(crate) struct Registry {
    entries: Vec<Entry>,
    index: BTreeMap<Vec<u8>, usize>,
}

/// The QMP capability enum (`QMPCapability`).
pub(crate) fn capability_enum() -> ArgType {
    ArgType::Enum(vec!["oob".to_owned()])
}

fn builtins() -> Vec<(CommandSpec, Builtin)> {
    use ArgType::*;
    vec![
        (
            CommandSpec::new("qmp_capabilities")
                .allow_preconfig()
                .opt("enable", List(Box::new(capability_enum()))),
            Builtin::QmpCapabilities,
        ),
        (
            CommandSpec::new("query-version").allow_preconfig(),
            Builtin::QueryVersion,
        ),
        (
            CommandSpec::new("query-commands").allow_preconfig(),
            Builtin::QueryCommands,
        ),
        (
            CommandSpec::new("getfd").arg("fdname", String),
            Builtin::Getfd,
        ),
        (
            CommandSpec::new("closefd").arg("fdname", String),
            Builtin::Closefd,
        ),
        (
            CommandSpec::new("add-fd")
                .opt("fdset-id", Int)
                .opt("opaque", String),
            Builtin::AddFd,
        ),
        (
            CommandSpec {
                arguments: vec![
                    Member::required("fdset-id", Int),
                    Member::optional("fd", Int),
                ],
                ..CommandSpec::new("remove-fd")
            },
            Builtin::RemoveFd,
        ),
        (CommandSpec::new("query-fdsets"), Builtin::QueryFdsets),
    ]
}

impl Registry {
    /// A table holding the built-in commands.
    pub(crate) fn new() -> Registry {
        let mut r = Registry {
            entries: Vec::new(),
            index: BTreeMap::new(),
        };
        for (spec, b) in builtins() {
            r.index
                .insert(spec.name.as_bytes().to_vec(), r.entries.len());
            r.entries.push(Entry {
                name: CommandName::from(spec.name.as_str()),
                spec,
                builtin: Some(b),
            });
        }
        r
    }

    pub(crate) fn register(&mut self, spec: CommandSpec) -> Result<(), ApiMisuse> {
        if self.index.contains_key(spec.name.as_bytes()) {
            return Err(ApiMisuse::CommandExists(spec.name));
        }
        self.index
            .insert(spec.name.as_bytes().to_vec(), self.entries.len());
        self.entries.push(Entry {
            name: CommandName::from(spec.name.as_str()),
            spec,
            builtin: None,
        });
        Ok(())
    }

    pub(crate) fn get(&self, name: &[u8]) -> Option<&Entry> {
        self.index.get(name).map(|&i| &self.entries[i])
    }

    /// `query-commands` order: QEMU prepends while walking the table, so newest first.
    pub(crate) fn names_newest_first(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().rev().map(|e| e.spec.name.as_str())
    }

    /// The embedder's commands, in registration order.
    pub(crate) fn embedder_specs(&self) -> impl Iterator<Item = &CommandSpec> {
        self.entries
            .iter()
            .filter(|e| e.builtin.is_none())
            .map(|e| &e.spec)
    }
}
