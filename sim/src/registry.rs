//! The commands the simulated machine registers, and what their handlers answer.
//!
//! Handler results are a pure function of the request's tag, so the client side can compute
//! every expected reply when it sends the request.

use qmp_core::json::{Object, Value};
use qmp_core::server::{ArgType, CallResult, CommandSpec, ErrorClass, Member};

use crate::wire::J;

/// In-band echo: `{"tag": int, "pad"?: any}` → `{"tag": tag}` (or an error for some tags).
pub const ECHO: &str = "sim-echo";
/// The out-of-band echo: same contract, `allow-oob`.
pub const OOB_ECHO: &str = "sim-oob";
/// A command without a success response (QAPI `success-response: false`): a success sends
/// nothing, an error is answered as usual.
pub const QUIET: &str = "sim-quiet";
/// QEMU 2.12's test command: `lock: true` blocks until an out-of-band `lock: false`.
pub const OOB_TEST: &str = "x-oob-test";
/// In-band `{"fdname": str}`: the handler takes the monitor's named fd (QEMU's
/// `monitor_get_fd`, as `-netdev tap,fd=NAME` consumers do) and closes it; `{}` or QEMU's
/// `File descriptor named '<name>' has not been found`.
pub const TAKE_FD: &str = "sim-take-fd";

/// The registry handed to the server.
pub fn commands() -> Vec<CommandSpec> {
    let tag = Member::required("tag", ArgType::Int);
    vec![
        CommandSpec {
            name: ECHO.into(),
            allow_oob: false,
            allow_preconfig: true,
            success_response: true,
            arguments: vec![tag.clone(), Member::optional("pad", ArgType::Any)],
            ..CommandSpec::default()
        },
        CommandSpec {
            name: OOB_ECHO.into(),
            allow_oob: true,
            allow_preconfig: true,
            success_response: true,
            arguments: vec![tag.clone()],
            ..CommandSpec::default()
        },
        CommandSpec {
            name: QUIET.into(),
            allow_oob: false,
            allow_preconfig: true,
            success_response: false,
            arguments: vec![tag],
            ..CommandSpec::default()
        },
        CommandSpec {
            name: OOB_TEST.into(),
            allow_oob: true,
            allow_preconfig: true,
            success_response: true,
            arguments: vec![Member::required("lock", ArgType::Bool)],
            ..CommandSpec::default()
        },
        CommandSpec {
            name: TAKE_FD.into(),
            allow_oob: false,
            allow_preconfig: true,
            success_response: true,
            arguments: vec![Member::required("fdname", ArgType::String)],
            ..CommandSpec::default()
        },
    ]
}

/// What the echo handlers answer for `tag`: mostly `{"tag": tag}`, an error for one tag in five.
pub fn handler_result(tag: i64) -> Result<J, String> {
    if tag.rem_euclid(5) == 4 {
        Err(format!("sim handler failed for tag {tag}"))
    } else {
        Ok(J::obj(vec![("tag", J::Int(tag))]))
    }
}

/// A typed handler result: `{"tag": tag}`.
#[derive(serde::Serialize)]
struct Tagged {
    tag: i64,
}

/// [`handler_result`] as the core's [`CallResult`].
pub fn call_result(tag: i64) -> CallResult {
    match handler_result(tag) {
        // Every other result comes serialised from a typed value, as a typed handler's
        // would: the clients' models expect the same bytes either way.
        Ok(_) if tag.rem_euclid(2) == 1 => CallResult::serialize(&Tagged { tag }),
        Ok(_) => {
            let mut o = Object::new();
            o.insert("tag", Value::Int(tag));
            CallResult::Return(Value::Object(o))
        }
        Err(desc) => CallResult::Error {
            class: ErrorClass::GenericError,
            desc,
        },
    }
}

/// The empty success of `x-oob-test`.
pub fn empty_return() -> CallResult {
    CallResult::Return(Value::Object(Object::new()))
}
