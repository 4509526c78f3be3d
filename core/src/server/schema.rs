//! Command registration vocabulary: a command's options and the schema of its arguments.
//!
//! This module only describes; checking arguments against a schema is `args.rs` (hand-written
//! types) and `qapi_check.rs` (imported ones), looking commands up is `registry.rs`.

use serde::{Deserialize, Serialize};

use super::args::check_arguments;
use super::config::Dialect;
use super::qapi::QapiArgs;
use super::qapi_check::check_qapi_arguments;
use crate::json::Object;

/// The type of a command argument, from which the core checks arguments with QEMU's texts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// A flat union: common members (the discriminator among them, normally an enum), then
    /// the members of the variant the discriminator names.
    Union {
        /// Members every variant has; must include the discriminator.
        base: Vec<Member>,
        /// The variant part.
        union: FlatUnion,
    },
    /// An alternate: the branch is chosen by the JSON type of the value (QAPI `alternate`).
    Alternate {
        /// The QAPI type name, used in QEMU's error text when no branch fits.
        name: String,
        /// The branches; at most one per JSON kind.
        branches: Vec<ArgType>,
    },
}

/// The variant part of a flat union.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct FlatUnion {
    /// Name of the base member whose value picks the variant.
    pub discriminator: String,
    /// The variants; a discriminator value without an entry has no extra members.
    pub variants: Vec<Variant>,
}

/// One variant of a flat union.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// The discriminator value that selects it.
    pub value: String,
    /// Its extra members.
    pub members: Vec<Member>,
}

/// A named member of an object argument type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Member name.
    pub name: String,
    /// Its type.
    pub ty: ArgType,
    /// May be left out.
    pub optional: bool,
    /// QAPI features of the member (e.g. `deprecated`), shown by `query-qmp-schema` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

impl Member {
    /// A required member.
    pub fn required(name: &str, ty: ArgType) -> Member {
        Member {
            name: name.to_owned(),
            ty,
            optional: false,
            features: Vec::new(),
        }
    }

    /// An optional member.
    pub fn optional(name: &str, ty: ArgType) -> Member {
        Member {
            name: name.to_owned(),
            ty,
            optional: true,
            features: Vec::new(),
        }
    }

    /// Adds a QAPI feature (e.g. `deprecated`).
    pub fn feature(mut self, name: &str) -> Member {
        self.features.push(name.to_owned());
        self
    }
}

/// A command the embedder registers.
///
/// Build one with [`CommandSpec::new`] and the builder methods, or with a struct literal
/// ending in `..Default::default()` (fields may be added).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandSpec {
    /// The command name.
    pub name: String,
    /// `allow-oob`
    pub allow_oob: bool,
    /// `allow-preconfig`
    pub allow_preconfig: bool,
    /// False for commands flagged "no success response" (no reply on success).
    pub success_response: bool,
    /// Members of the `arguments` object (the base members when `union` is set).
    pub arguments: Vec<Member>,
    /// When set, `arguments` is the base of a flat union (QAPI `'boxed': true` with a union
    /// type, e.g. `blockdev-add`).
    #[serde(default)]
    pub union: Option<FlatUnion>,
    /// QAPI feature `deprecated` (refused under `CompatPolicy::deprecated_input = Reject`).
    #[serde(default)]
    pub deprecated: bool,
    /// QAPI feature `unstable` (refused under `CompatPolicy::unstable_input = Reject`).
    #[serde(default)]
    pub unstable: bool,
    /// When set, the arguments are checked against this type of an imported QAPI schema
    /// instead of `arguments` and `union` (see [`super::qapi`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qapi: Option<QapiArgs>,
    /// The type of a successful return, for `query-qmp-schema` only (the core never checks a
    /// handler's result). `None` is shown as QEMU shows a command without `returns`: the
    /// empty object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returns: Option<ArgType>,
    /// QAPI features other than `deprecated` and `unstable` (e.g. `savevm-monitor-nodes`),
    /// shown by `query-qmp-schema` after those.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

impl Default for CommandSpec {
    fn default() -> Self {
        CommandSpec {
            name: String::new(),
            allow_oob: false,
            allow_preconfig: false,
            success_response: true,
            arguments: Vec::new(),
            union: None,
            deprecated: false,
            unstable: false,
            qapi: None,
            returns: None,
            features: Vec::new(),
        }
    }
}

impl CommandSpec {
    /// A command with no arguments, in-band only, not allowed in preconfig, with a reply.
    pub fn new(name: &str) -> CommandSpec {
        CommandSpec {
            name: name.to_owned(),
            ..CommandSpec::default()
        }
    }

    /// Sets `allow-oob`.
    pub fn allow_oob(mut self) -> Self {
        self.allow_oob = true;
        self
    }

    /// Sets `allow-preconfig`.
    pub fn allow_preconfig(mut self) -> Self {
        self.allow_preconfig = true;
        self
    }

    /// No reply on success.
    pub fn no_success_response(mut self) -> Self {
        self.success_response = false;
        self
    }

    /// Adds a required argument.
    pub fn arg(mut self, name: &str, ty: ArgType) -> Self {
        self.arguments.push(Member::required(name, ty));
        self
    }

    /// Adds an optional argument.
    pub fn opt(mut self, name: &str, ty: ArgType) -> Self {
        self.arguments.push(Member::optional(name, ty));
        self
    }

    /// Makes the arguments a flat union over the base members added so far.
    pub fn union(mut self, union: FlatUnion) -> Self {
        self.union = Some(union);
        self
    }

    /// Marks the command `deprecated`.
    pub fn deprecated(mut self) -> Self {
        self.deprecated = true;
        self
    }

    /// Checks the arguments against an imported schema's type (see [`super::qapi`]).
    pub fn qapi(mut self, args: QapiArgs) -> Self {
        self.qapi = Some(args);
        self
    }

    /// Declares the type of a successful return (shown by `query-qmp-schema`).
    pub fn returns(mut self, ty: ArgType) -> Self {
        self.returns = Some(ty);
        self
    }

    /// Check `args` as the core checks a request's `arguments` before the handler runs, with
    /// `dialect`'s texts: `Err` holds QEMU's error text (decoded lossily when a member name is
    /// not UTF-8).
    pub fn check_arguments(&self, dialect: Dialect, args: &Object) -> Result<(), String> {
        let checked = match &self.qapi {
            Some(qapi) => check_qapi_arguments(dialect, qapi, args),
            None => check_arguments(dialect, &self.arguments, self.union.as_ref(), args),
        };
        checked.map_err(|desc| String::from_utf8_lossy(&desc).into_owned())
    }

    /// Marks the command `unstable`.
    pub fn unstable(mut self) -> Self {
        self.unstable = true;
        self
    }
}

/// An event the embedder emits, declared so that `query-qmp-schema` can show it.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct EventSpec {
    /// The event name.
    pub name: String,
    /// Members of its `data` object.
    pub data: Vec<Member>,
    /// QAPI feature `deprecated`.
    #[serde(default)]
    pub deprecated: bool,
    /// QAPI feature `unstable`.
    #[serde(default)]
    pub unstable: bool,
}

impl EventSpec {
    /// An event without data.
    pub fn new(name: &str) -> EventSpec {
        EventSpec {
            name: name.to_owned(),
            ..EventSpec::default()
        }
    }

    /// Adds a required data member.
    pub fn arg(mut self, name: &str, ty: ArgType) -> Self {
        self.data.push(Member::required(name, ty));
        self
    }

    /// Adds an optional data member.
    pub fn opt(mut self, name: &str, ty: ArgType) -> Self {
        self.data.push(Member::optional(name, ty));
        self
    }
}
