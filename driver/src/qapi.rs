//! `query-qmp-schema` for a [`Registry`].
//!
//! Two ways: [`serve_query_qmp_schema`] describes the registered commands (their argument
//! specs and declared return types) and the declared events; [`serve_schema`] serves an
//! imported QEMU schema (`qmpd --schema FILE`): every command it declares is registered with
//! argument checking against it, and `query-qmp-schema` answers with it. There, commands
//! already registered keep their handler and get the imported argument type; the core's
//! built-in commands keep the core's own checking; any other declared command answers a valid
//! call with [`not_implemented_text`] (an invalid call gets QEMU's argument error first).

use std::sync::Arc;

use qmp_core::server::qapi::QapiSchema;
use qmp_core::server::{
    builtin_command_names, builtin_command_specs, schema_info, ArgType, CallResult, CommandSpec,
    ErrorClass, EventSpec,
};

use crate::registry::{Handler, Registry};

/// The error text of a valid call to a declared command without a handler.
pub fn not_implemented_text(command: &str) -> String {
    format!("Command '{command}' is declared by the schema but not implemented by this server")
}

/// Register `schema`'s commands in `registry` (see the module doc), `query-qmp-schema`
/// included.
pub fn serve_schema(registry: &mut Registry, schema: &Arc<QapiSchema>) {
    let builtins = builtin_command_names();
    for command in schema.commands() {
        // The core's `human-monitor-command` checks its own arguments (and stays listed:
        // `query-qmp-schema` answers with the schema).
        let core_hmc =
            command.name == "human-monitor-command" && registry.uses_core_human_monitor_command();
        if builtins.contains(&command.name) || core_hmc {
            continue;
        }
        let Some(imported) = schema.command_spec(&command.name) else {
            continue;
        };
        // A command registered already keeps its options and return type.
        let mut spec = registry
            .specs()
            .iter()
            .find(|s| s.name == command.name)
            .cloned()
            .unwrap_or_else(|| imported.clone());
        spec.allow_oob = imported.allow_oob;
        spec.deprecated = imported.deprecated;
        spec.unstable = imported.unstable;
        spec.qapi = imported.qapi;
        // A registered command keeps its handler (of either kind).
        if registry.set_spec(spec.clone()) {
            continue;
        }
        let handler: Handler = if command.name == "query-qmp-schema" {
            let answer = schema.schema_info();
            Arc::new(move |_, _| CallResult::Return(answer.clone()))
        } else {
            let desc = not_implemented_text(&command.name);
            Arc::new(move |_, _| CallResult::Error {
                class: ErrorClass::GenericError,
                desc: desc.clone(),
            })
        };
        registry.insert(spec, handler);
    }
}

/// Give registered commands their declared return types and extra QAPI features (for
/// [`serve_query_qmp_schema`]), keeping their handlers.
pub fn declare_returns(
    registry: &mut Registry,
    returns: impl Fn(&str) -> Option<ArgType>,
    features: impl Fn(&str) -> Vec<String>,
) {
    let specs: Vec<CommandSpec> = registry.specs().to_vec();
    for mut spec in specs {
        spec.returns = returns(&spec.name).or(spec.returns);
        spec.features.extend(features(&spec.name));
        registry.set_spec(spec);
    }
}

/// Register `spec` (normally `query-qmp-schema`) answering with the `SchemaInfo` list of the
/// core's built-in commands, every command registered so far, `spec` itself and `events`.
pub fn serve_query_qmp_schema(registry: &mut Registry, spec: CommandSpec, events: &[EventSpec]) {
    let mut commands = builtin_command_specs();
    commands.extend(registry.specs().iter().cloned());
    if registry.uses_core_human_monitor_command() {
        commands.push(qmp_core::server::human_monitor_command_spec());
    }
    commands.push(spec.clone());
    let answer = schema_info(&commands, events);
    registry.insert(
        spec,
        Arc::new(move |_, _| CallResult::Return(answer.clone())),
    );
}
