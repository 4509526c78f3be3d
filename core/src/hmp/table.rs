//! The human monitor's command table (QEMU's `hmp_cmds` and `hmp_info_cmds`): what a command
//! is called (`stop|s`), how its arguments are typed (`args_type`), its help line, its flags,
//! and which of them are available in the current machine phase.
//!
//! Both tables are kept sorted by name with `strcmp` order, as QEMU sorts them at start-up
//! (`sortcmdlist`), so `help`, `info` and tab completion list them in QEMU's order. A few
//! commands are answered by the core itself ([`Builtin`]); the embedder registers the rest
//! and runs them as in-band calls.

use serde::{Deserialize, Serialize};

use super::args::check_args_type;
use crate::server::{ApiMisuse, CommandName};

/// The prefix of the [`Call`](crate::server::Call) name of an embedder's HMP command: `stop|s`
/// is called as `hmp stop`, `info status` as `hmp info status` (QMP names have no spaces).
pub const HMP_CALL_PREFIX: &str = "hmp ";

/// Commands the core runs itself.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Builtin {
    /// `help|? [cmd]`
    Help,
    /// `info` without a subcommand: the `info` help.
    Info,
    /// `info history`
    InfoHistory,
    /// `getfd fdname`
    Getfd,
    /// `closefd fdname`
    Closefd,
}

/// One HMP command, as `hmp-commands.hx` declares it.
///
/// ```
/// use qmp_core::hmp::HmpCommand;
/// let stop = HmpCommand::new("stop|s", "", "", "stop emulation");
/// assert_eq!(stop.call_name(), "hmp stop");
/// let status = HmpCommand::info("status", "", "", "show the current VM status (running|paused)")
///     .flags("p");
/// assert_eq!(status.call_name(), "hmp info status");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HmpCommand {
    /// Names separated by `|`, the first one canonical (`cont|c`).
    pub name: String,
    /// QEMU's argument types, e.g. `fdname:s`, `force:-f,device:B`, `val:l,size:i?`.
    pub args_type: String,
    /// The parameter synopsis shown by `help`.
    pub params: String,
    /// The help text.
    pub help: String,
    /// QEMU's flags; `p` makes the command available in the preconfig phase.
    pub flags: String,
    /// A subcommand of `info`.
    #[serde(default)]
    pub is_info: bool,
    /// QEMU has the command but no handler for it here: running it prints
    /// `Command "<name>" is not available.` (it is still listed by `help`).
    #[serde(default)]
    pub unavailable: bool,
}

impl HmpCommand {
    /// A top-level command.
    pub fn new(name: &str, args_type: &str, params: &str, help: &str) -> HmpCommand {
        HmpCommand {
            name: name.to_owned(),
            args_type: args_type.to_owned(),
            params: params.to_owned(),
            help: help.to_owned(),
            flags: String::new(),
            is_info: false,
            unavailable: false,
        }
    }

    /// A subcommand of `info`.
    pub fn info(name: &str, args_type: &str, params: &str, help: &str) -> HmpCommand {
        HmpCommand {
            is_info: true,
            ..HmpCommand::new(name, args_type, params, help)
        }
    }

    /// With QEMU's flags (`"p"`: allowed in preconfig).
    pub fn flags(mut self, flags: &str) -> HmpCommand {
        self.flags = flags.to_owned();
        self
    }

    /// Listed and completed, but without a handler (see [`HmpCommand::unavailable`]).
    pub fn without_handler(mut self) -> HmpCommand {
        self.unavailable = true;
        self
    }

    /// The name of the calls issued for this command (see [`HMP_CALL_PREFIX`]).
    pub fn call_name(&self) -> String {
        let first = self.name.split('|').next().unwrap_or("");
        if self.is_info {
            format!("{HMP_CALL_PREFIX}info {first}")
        } else {
            format!("{HMP_CALL_PREFIX}{first}")
        }
    }

    /// QEMU's `cmd_can_preconfig`.
    pub fn preconfig(&self) -> bool {
        self.flags.contains('p')
    }
}

/// A table entry: the spec, and either a core built-in or the embedder's call name.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) cmd: HmpCommand,
    pub(crate) builtin: Option<Builtin>,
    pub(crate) call: CommandName,
}

/// QEMU's `hmp_compare_cmd`: `name` is one of the `|`-separated names of `list`.
pub(crate) fn compare_cmd(name: &[u8], list: &str) -> bool {
    list.as_bytes().split(|&b| b == b'|').any(|n| n == name)
}

/// Both tables, sorted by name.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    pub(crate) top: Vec<Entry>,
    pub(crate) info: Vec<Entry>,
}

impl Default for Table {
    fn default() -> Self {
        Table::new()
    }
}

fn builtin(cmd: HmpCommand, b: Builtin) -> Entry {
    Entry {
        call: CommandName::from(cmd.call_name().as_str()),
        cmd,
        builtin: Some(b),
    }
}

impl Table {
    /// The core's built-ins, with QEMU 7.2's texts.
    pub(crate) fn new() -> Table {
        let mut t = Table {
            top: Vec::new(),
            info: Vec::new(),
        };
        let builtins = [
            (
                HmpCommand::new("help|?", "name:S?", "[cmd]", "show the help").flags("p"),
                Builtin::Help,
            ),
            (
                HmpCommand::new(
                    "info",
                    "item:s?",
                    "[subcommand]",
                    "show various information about the system state",
                )
                .flags("p"),
                Builtin::Info,
            ),
            (
                HmpCommand::info("history", "", "", "show the command line history").flags("p"),
                Builtin::InfoHistory,
            ),
            (
                HmpCommand::new(
                    "getfd",
                    "fdname:s",
                    "getfd name",
                    "receive a file descriptor via SCM rights and assign it a name",
                )
                .flags("p"),
                Builtin::Getfd,
            ),
            (
                HmpCommand::new(
                    "closefd",
                    "fdname:s",
                    "closefd name",
                    "close a file descriptor previously passed via SCM rights",
                )
                .flags("p"),
                Builtin::Closefd,
            ),
        ];
        for (cmd, b) in builtins {
            t.insert(builtin(cmd, b));
        }
        t
    }

    fn insert(&mut self, e: Entry) {
        let v = if e.cmd.is_info {
            &mut self.info
        } else {
            &mut self.top
        };
        let at = v.partition_point(|x| x.cmd.name.as_bytes() <= e.cmd.name.as_bytes());
        v.insert(at, e);
    }

    /// Add an embedder's command. Refused: a name clashing with one in the same table, an
    /// empty name, or an `args_type` the parser does not know.
    pub(crate) fn register(&mut self, cmd: HmpCommand) -> Result<(), ApiMisuse> {
        let v = if cmd.is_info { &self.info } else { &self.top };
        let clash = cmd.name.is_empty()
            || cmd
                .name
                .split('|')
                .any(|n| n.is_empty() || n.contains(|c: char| c.is_ascii_whitespace() || c == '/'))
            || cmd
                .name
                .split('|')
                .any(|n| v.iter().any(|e| compare_cmd(n.as_bytes(), &e.cmd.name)));
        if clash {
            return Err(ApiMisuse::BadHmpCommand(cmd.name));
        }
        if let Err(why) = check_args_type(&cmd.args_type) {
            return Err(ApiMisuse::BadHmpArgsType {
                name: cmd.name,
                why,
            });
        }
        let call = CommandName::from(cmd.call_name().as_str());
        self.insert(Entry {
            cmd,
            builtin: None,
            call,
        });
        Ok(())
    }

    /// The entries of one table.
    pub(crate) fn entries(&self, info: bool) -> &[Entry] {
        if info {
            &self.info
        } else {
            &self.top
        }
    }

    /// The embedder's commands (both tables, by name).
    pub(crate) fn embedder_commands(&self) -> impl Iterator<Item = &HmpCommand> {
        self.top
            .iter()
            .chain(self.info.iter())
            .filter(|e| e.builtin.is_none())
            .map(|e| &e.cmd)
    }

    /// The entry of a call name (for tests and the embedder's lookups).
    pub(crate) fn by_call(&self, call: &str) -> Option<&Entry> {
        self.top
            .iter()
            .chain(self.info.iter())
            .find(|e| e.builtin.is_none() && &*e.call == call)
    }
}
