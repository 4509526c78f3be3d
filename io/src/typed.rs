//! Typed handlers for either adapter's builder ([`Builder`]): arguments as a
//! `serde::Deserialize` type, the result as a `serde::Serialize` type (see
//! [`qmp_core::server::call_typed`]), and the two halves of that for typed async handlers.

use serde::de::DeserializeOwned;
use serde::Serialize;

use qmp_core::server::{call_typed, CommandError, CommandSpec};

use crate::builder::Builder;
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

impl<Adapter> TypedCommands for Builder<Adapter> {
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

/// The first half of [`call_typed`] for a handler that runs later (a typed async one): `args`
/// as `A`, or the reply `call_typed` gives to arguments that do not fit `A`.
#[cfg(feature = "tokio")]
pub(crate) fn call_typed_args<A: DeserializeOwned>(
    args: &qmp_core::json::Object,
) -> Result<A, qmp_core::server::CallResult> {
    let mut parsed = None;
    let refused = call_typed(args, |a: A| {
        parsed = Some(a);
        Ok(qmp_core::server::Empty {})
    });
    parsed.ok_or(refused)
}

/// The second half: a typed handler's result as [`call_typed`] makes it a [`CallResult`].
#[cfg(feature = "tokio")]
pub(crate) fn typed_result<R: Serialize>(
    result: Result<R, CommandError>,
) -> qmp_core::server::CallResult {
    call_typed(
        &qmp_core::json::Object::new(),
        move |_: qmp_core::server::Empty| result,
    )
}
