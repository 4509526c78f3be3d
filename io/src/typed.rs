//! Typed handlers for [`QmpServerBuilder`]: arguments as a `serde::Deserialize` type, the
//! result as a `serde::Serialize` type (see [`qmp_core::server::call_typed`]).

use serde::de::DeserializeOwned;
use serde::Serialize;

use qmp_core::server::{call_typed, CommandError, CommandSpec};

use crate::server::QmpServerBuilder;
use qmp_driver::CallContext;

/// Registration of typed handlers (`use qmp_io::TypedCommands;`).
pub trait TypedCommands: Sized {
    /// Register a command whose handler takes its checked arguments as `A` and returns `R`
    /// (use [`qmp_core::server::Empty`] for no arguments or an empty return).
    fn command_typed<A, R, F>(self, spec: CommandSpec, handler: F) -> Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> Result<R, CommandError> + Send + Sync + 'static;

    /// [`TypedCommands::command_typed`] with the handler's [`CallContext`].
    fn command_typed_with_context<A, R, F>(self, spec: CommandSpec, handler: F) -> Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        F: Fn(&CallContext<'_>, A) -> Result<R, CommandError> + Send + Sync + 'static;
}

impl TypedCommands for QmpServerBuilder {
    fn command_typed<A, R, F>(self, spec: CommandSpec, handler: F) -> Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> Result<R, CommandError> + Send + Sync + 'static,
    {
        self.command(spec, move |args| call_typed(args, &handler))
    }

    fn command_typed_with_context<A, R, F>(self, spec: CommandSpec, handler: F) -> Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        F: Fn(&CallContext<'_>, A) -> Result<R, CommandError> + Send + Sync + 'static,
    {
        self.command_with_context(spec, move |ctx, args| {
            call_typed(args, |a: A| handler(ctx, a))
        })
    }
}
