//! The command table: the core's built-in commands and the embedder's registered ones.
//!
//! Lookup is by the raw name bytes of the request (a name can be any JSON string).

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
    /// Registered on request (`Server::register_human_monitor_command`).
    HumanMonitorCommand,
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
    index: NameIndex,
}

/// Open-addressing index from a name to its entry. A lookup (one per request) hashes the name
/// once and usually compares one name, where an ordered map compared it with several. The hash
/// is fixed (FNV-1a) and the index is never iterated, so nothing of it reaches the output.
/// Bounded by the table: at most twice as many slots as commands, plus the initial 64.
#[derive(Debug)]
struct NameIndex {
    /// Entry index + 1 per slot; 0 is an empty slot. The length is a power of two.
    slots: Vec<u32>,
}

/// Slots of a new index (more than the built-ins and a typical embedder's commands).
const INITIAL_SLOTS: usize = 64;

fn fnv1a(name: &[u8]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h as usize
}

impl NameIndex {
    fn new() -> NameIndex {
        NameIndex {
            slots: vec![0; INITIAL_SLOTS],
        }
    }

    /// The entry named `name`, probing from its hash's slot to the first empty one.
    fn find(&self, entries: &[Entry], name: &[u8]) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let mut at = fnv1a(name) & mask;
        loop {
            let i = self.slots[at].checked_sub(1)? as usize;
            if entries[i].spec.name.as_bytes() == name {
                return Some(i);
            }
            at = (at + 1) & mask;
        }
    }

    /// Index `entries[i]` (not yet indexed; the caller checked its name is new). Keeps at least
    /// half of the slots empty, so every probe ends.
    fn insert(&mut self, entries: &[Entry], i: usize) {
        if 2 * (i + 1) > self.slots.len() {
            self.slots = vec![0; 2 * self.slots.len()];
            for j in 0..i {
                self.place(entries, j);
            }
        }
        self.place(entries, i);
    }

    fn place(&mut self, entries: &[Entry], i: usize) {
        let mask = self.slots.len() - 1;
        let mut at = fnv1a(entries[i].spec.name.as_bytes()) & mask;
        while self.slots[at] != 0 {
            at = (at + 1) & mask;
        }
        // Entry counts stay far below u32::MAX (each is a registered command).
        self.slots[at] = u32::try_from(i + 1).unwrap_or(u32::MAX);
    }
}

/// The QMP capability enum (`QMPCapability`).
pub(crate) fn capability_enum() -> ArgType {
    ArgType::Enum(vec!["oob".to_owned()])
}

fn builtins() -> Vec<(CommandSpec, Builtin)> {
    use ArgType::*;
    let object = |members: &[(&str, ArgType, bool)]| {
        Object(
            members
                .iter()
                .map(|(name, ty, optional)| match optional {
                    true => Member::optional(name, ty.clone()),
                    false => Member::required(name, ty.clone()),
                })
                .collect(),
        )
    };
    // The return types of QAPI (VersionInfo, CommandInfo, AddfdInfo, FdsetInfo), for
    // query-qmp-schema.
    let triple = object(&[
        ("major", Int, false),
        ("minor", Int, false),
        ("micro", Int, false),
    ]);
    let version = object(&[("qemu", triple, false), ("package", String, false)]);
    let command_info = object(&[("name", String, false)]);
    let addfd_info = object(&[("fdset-id", Int, false), ("fd", Int, false)]);
    let fd_info = object(&[("fd", Int, false), ("opaque", String, true)]);
    let fdset_info = object(&[
        ("fdset-id", Int, false),
        ("fds", List(Box::new(fd_info)), false),
    ]);
    vec![
        (
            CommandSpec::new("qmp_capabilities")
                .allow_preconfig()
                .opt("enable", List(Box::new(capability_enum()))),
            Builtin::QmpCapabilities,
        ),
        (
            CommandSpec::new("query-version")
                .allow_preconfig()
                .returns(version),
            Builtin::QueryVersion,
        ),
        (
            CommandSpec::new("query-commands")
                .allow_preconfig()
                .returns(List(Box::new(command_info))),
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
                .opt("opaque", String)
                .returns(addfd_info),
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
        (
            CommandSpec::new("query-fdsets").returns(List(Box::new(fdset_info))),
            Builtin::QueryFdsets,
        ),
    ]
}

/// The specs of the commands the core answers itself, in the order `query-commands` lists
/// them last (with their return types, for `query-qmp-schema`).
pub fn builtin_command_specs() -> Vec<CommandSpec> {
    builtins().into_iter().map(|(spec, _)| spec).collect()
}

/// The names of the commands the core answers itself (registering one is refused).
pub fn builtin_command_names() -> Vec<String> {
    builtins().into_iter().map(|(spec, _)| spec.name).collect()
}

impl Registry {
    /// A table holding the built-in commands.
    pub(crate) fn new() -> Registry {
        let mut r = Registry {
            entries: Vec::new(),
            index: NameIndex::new(),
        };
        for (spec, b) in builtins() {
            r.entries.push(Entry {
                name: CommandName::from(spec.name.as_str()),
                spec,
                builtin: Some(b),
            });
            r.index.insert(&r.entries, r.entries.len() - 1);
        }
        r
    }

    pub(crate) fn register(&mut self, spec: CommandSpec) -> Result<(), ApiMisuse> {
        if self.get(spec.name.as_bytes()).is_some() {
            return Err(ApiMisuse::CommandExists(spec.name));
        }
        self.entries.push(Entry {
            name: CommandName::from(spec.name.as_str()),
            spec,
            builtin: None,
        });
        self.index.insert(&self.entries, self.entries.len() - 1);
        Ok(())
    }

    /// Add a command the core runs itself (refused like `register` when the name is taken).
    pub(crate) fn register_builtin(
        &mut self,
        spec: CommandSpec,
        b: Builtin,
    ) -> Result<(), ApiMisuse> {
        self.register(spec)?;
        if let Some(e) = self.entries.last_mut() {
            e.builtin = Some(b);
        }
        Ok(())
    }

    pub(crate) fn get(&self, name: &[u8]) -> Option<&Entry> {
        self.index
            .find(&self.entries, name)
            .map(|i| &self.entries[i])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_found_across_index_growth() {
        let mut r = Registry::new();
        let builtins = r.entries.len();
        // Enough to grow the index twice; the names share long prefixes.
        let names: Vec<String> = (0..200).map(|i| format!("x-vendor-cmd-{i}")).collect();
        for n in &names {
            r.register(CommandSpec::new(n)).unwrap();
        }
        assert!(r.index.slots.len() >= 2 * r.entries.len());
        for (i, n) in names.iter().enumerate() {
            let e = r.get(n.as_bytes()).expect("registered");
            assert_eq!(e.name, n.as_str());
            assert!(std::ptr::eq(e, &r.entries[builtins + i]));
        }
        assert!(r
            .get(b"query-commands")
            .is_some_and(|e| e.builtin.is_some()));
        for missing in [
            &b"x-vendor-cmd-200"[..],
            b"",
            b"x-vendor-cmd-1\0",
            b"QUERY-COMMANDS",
        ] {
            assert!(r.get(missing).is_none(), "{missing:?}");
        }
        assert!(matches!(
            r.register(CommandSpec::new("x-vendor-cmd-7")),
            Err(ApiMisuse::CommandExists(n)) if n == "x-vendor-cmd-7"
        ));
        assert!(matches!(
            r.register(CommandSpec::new("getfd")),
            Err(ApiMisuse::CommandExists(_))
        ));
    }
}
