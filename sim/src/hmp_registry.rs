//! The human monitor (HMP) commands the simulated machine registers, and what their handlers
//! print: a pure function of the command and its arguments, so the people's model
//! (`hmp_model`) knows every line's output when the line is typed, as the QMP clients know
//! their replies from the tag ([`crate::registry`]).

use qmp_core::hmp::HmpCommand;
use qmp_core::json::{Object, Value};
use qmp_core::server::{CallResult, ErrorClass};

/// `sim_echo TAG`: the one command with an argument (`tag:i`), allowed in preconfig.
pub const SIM_ECHO: &str = "sim_echo";

/// The machine's HMP commands, as `hmp-commands.hx` would declare them (QEMU 7.2's names,
/// flags and help texts for those QEMU has).
pub fn hmp_commands() -> Vec<HmpCommand> {
    vec![
        HmpCommand::new("cont|c", "", "", "resume emulation"),
        HmpCommand::new("stop|s", "", "", "stop emulation"),
        HmpCommand::new("system_powerdown", "", "", "send system power down event"),
        HmpCommand::new(SIM_ECHO, "tag:i", "tag", "echo a tag through the machine").flags("p"),
        HmpCommand::info(
            "status",
            "",
            "",
            "show the current VM status (running|paused)",
        )
        .flags("p"),
        HmpCommand::info("version", "", "", "show the version of QEMU").flags("p"),
        HmpCommand::info("name", "", "", "show the current VM name").flags("p"),
    ]
}

/// What the handler of `call` (an [`HmpCommand::call_name`]) with `tag` (for `sim_echo`)
/// answers: `Ok(text)` is returned as a string and printed, `Err(desc)` is printed as
/// `Error: desc`, `None` a non-string return that prints nothing. `None` outside the table.
pub fn hmp_handler(call: &str, tag: Option<i64>) -> Option<Result<Option<String>, String>> {
    let r = match call {
        "hmp cont" => Ok(Some(String::new())),
        "hmp stop" => Ok(None),
        "hmp system_powerdown" => Ok(Some("powering down\nbye for now\n".to_owned())),
        "hmp sim_echo" => {
            let tag = tag?;
            if tag.rem_euclid(5) == 4 {
                Err(format!("sim handler failed for tag {tag}"))
            } else {
                Ok(Some(format!("tag {tag}\n")))
            }
        }
        "hmp info status" => Ok(Some("VM status: running\n".to_owned())),
        "hmp info version" => Ok(Some("7.2.22 (qmp-sim)\n".to_owned())),
        // Without a final newline: the prompt follows the text on the same line.
        "hmp info name" => Ok(Some("qmp-sim".to_owned())),
        _ => return None,
    };
    Some(r)
}

/// [`hmp_handler`] as the core's [`CallResult`].
pub fn hmp_call_result(r: &Result<Option<String>, String>) -> CallResult {
    match r {
        Ok(Some(text)) => CallResult::Return(Value::string(text.as_str())),
        Ok(None) => CallResult::Return(Value::Object(Object::new())),
        Err(desc) => CallResult::Error {
            class: ErrorClass::GenericError,
            desc: desc.clone(),
        },
    }
}

/// What the monitor prints for a handler's answer, before `\n` becomes `\r\n`.
pub fn printed(r: &Result<Option<String>, String>) -> String {
    match r {
        Ok(Some(text)) => text.clone(),
        Ok(None) => String::new(),
        Err(desc) => format!("Error: {desc}\n"),
    }
}
