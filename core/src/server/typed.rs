//! Typed handlers: a command's checked arguments as any `serde::Deserialize` type, its result
//! as any `serde::Serialize` type ([`call_typed`]), for adapters' registration sugar.
//!
//! The core checks arguments against the command's schema before a handler runs, so the
//! arguments type only has to agree with that schema; when it does not (a stricter type, a
//! renamed member) the call fails with [`ARGS_MISMATCH`] and serde's reason, never a panic.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::types::{CallResult, ErrorClass};
use crate::json::{from_object, Object};

/// The start of the error text when checked arguments do not fit the handler's type.
pub const ARGS_MISMATCH: &str = "the arguments do not fit the command's handler";

/// A typed handler's failure: QMP's error class and description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandError {
    /// The error class (`GenericError` for almost everything, as in QEMU).
    pub class: ErrorClass,
    /// The human-readable description.
    pub desc: String,
}

impl CommandError {
    /// A `GenericError` with `desc`.
    pub fn generic(desc: impl Into<String>) -> CommandError {
        CommandError {
            class: ErrorClass::GenericError,
            desc: desc.into(),
        }
    }
}

/// No arguments, or the result of a command that returns nothing (serialised as `{}`, as
/// QEMU answers it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Empty {}

/// Run `handler` on `args` deserialised as `A`, and make its result a [`CallResult`].
///
/// ```
/// use qmp_core::json::{parse_value, Value};
/// use qmp_core::server::{call_typed, CallResult, CommandError};
///
/// #[derive(serde::Deserialize)]
/// struct Args { name: String, count: Option<u32> }
/// #[derive(serde::Serialize)]
/// struct Ret { greeting: String }
///
/// let args = parse_value(br#"{"name": "vm", "count": 2}"#).unwrap();
/// let Value::Object(args) = args else { unreachable!() };
/// let result = call_typed(&args, |a: Args| -> Result<Ret, CommandError> {
///     Ok(Ret { greeting: format!("{} x{}", a.name, a.count.unwrap_or(1)) })
/// });
/// let CallResult::ReturnJson(text) = result else { panic!() };
/// assert_eq!(text.as_bytes(), br#"{"greeting": "vm x2"}"#);
/// ```
pub fn call_typed<A, R, F>(args: &Object, handler: F) -> CallResult
where
    A: DeserializeOwned,
    R: Serialize,
    F: FnOnce(A) -> Result<R, CommandError>,
{
    match from_object::<A>(args) {
        Ok(a) => match handler(a) {
            Ok(ret) => CallResult::serialize(&ret),
            Err(e) => CallResult::Error {
                class: e.class,
                desc: e.desc,
            },
        },
        Err(e) => CallResult::Error {
            class: ErrorClass::GenericError,
            desc: format!("{ARGS_MISMATCH}: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{parse_value, Value};

    fn obj(text: &str) -> Object {
        match parse_value(text.as_bytes()) {
            Some(Value::Object(o)) => o,
            _ => panic!("not an object: {text}"),
        }
    }

    fn text(r: CallResult) -> String {
        match r {
            CallResult::ReturnJson(t) => String::from_utf8(t.as_bytes().to_vec()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn results_errors_and_mismatches() {
        #[derive(serde::Deserialize)]
        struct Args {
            level: u8,
        }
        let ok = call_typed(&obj(r#"{"level": 3}"#), |a: Args| {
            Ok::<_, CommandError>(vec![a.level; 2])
        });
        assert_eq!(text(ok), "[3, 3]");
        let empty = call_typed(&obj("{}"), |_: Empty| Ok::<_, CommandError>(Empty {}));
        assert_eq!(text(empty), "{}");
        let failed = call_typed(&obj(r#"{"level": 3}"#), |_: Args| {
            Err::<Empty, _>(CommandError {
                class: ErrorClass::DeviceNotFound,
                desc: "no such thing".into(),
            })
        });
        assert_eq!(
            failed,
            CallResult::Error {
                class: ErrorClass::DeviceNotFound,
                desc: "no such thing".into()
            }
        );
        let mismatch = call_typed(&obj(r#"{"level": 300}"#), |_: Args| {
            Ok::<_, CommandError>(Empty {})
        });
        assert_eq!(
            mismatch,
            CallResult::Error {
                class: ErrorClass::GenericError,
                desc: format!("{ARGS_MISMATCH}: invalid value: integer `300`, expected u8"),
            }
        );
    }
}
