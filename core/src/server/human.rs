//! Human monitors (HMP) on the server: QEMU 7.2's `monitor/hmp.c` glue between the line
//! editor, the in-band queue and the command table (the pure parts are in [`crate::hmp`]).
//!
//! * Open: the banner and the prompt (`CHR_EVENT_OPENED`).
//! * Input: bytes go one at a time through the line editor while the monitor is not suspended
//!   (QEMU's `monitor_can_read` admits one byte at a time); a finished line is queued as an
//!   in-band request and suspends the monitor (`monitor_command_cb`), so bytes typed ahead
//!   wait until the command is done.
//! * Dispatch (`handle_hmp_command`), when the dispatcher takes the line: the command is
//!   looked up, checked against the machine phase, its arguments parsed; errors and the
//!   built-ins are printed at once, the embedder's commands become in-band calls.
//! * Resume to 0: the line editor restarts and the prompt is printed (`monitor_accept_input`).
//!
//! A line is bounded by the line editor ([`crate::hmp::readline::CMD_BUF_SIZE`]); the echo of
//! one received chunk is appended in one piece.

use super::dispatch::Executed;
use super::monitor::{Monitor, Queued};
use super::registry::Builtin as QmpBuiltin;
use super::schema::{ArgType, CommandSpec};
use super::types::{Call, CallId, CallResult, ErrorClass, Lane, MonitorId, Output, RunState};
use super::{ApiMisuse, OutstandingCall, PendingCall, Server};
use crate::hmp::{self, help, Builtin, HmpCommand, ReadLine};
use crate::json::{JsonStreamer, Object, Value};

/// QEMU's `cmdname[256]`: a command name is cut at 255 bytes.
const CMD_NAME_MAX: usize = 255;

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

fn at(line: &[u8], i: usize) -> u8 {
    line.get(i).copied().unwrap_or(0)
}

/// What running a command line led to.
enum Run {
    /// Everything was printed (errors, built-ins, a blank line).
    Done,
    /// The embedder's command, with its parsed arguments.
    Call(super::CommandName, Object),
}

/// The text an HMP command's result prints (`\n` line ends): a returned string as it is,
/// an error as `hmp_handle_error` prints it; other values print nothing.
fn result_text(result: CallResult) -> Vec<u8> {
    match result {
        CallResult::Return(Value::String(s)) => s.as_bytes().to_vec(),
        CallResult::Return(_) | CallResult::ReturnJson(_) => Vec::new(),
        CallResult::Error { desc, .. } => {
            let mut out = b"Error: ".to_vec();
            out.extend_from_slice(desc.as_bytes());
            out.push(b'\n');
            out
        }
    }
}

/// What the command lookup found (QEMU's `monitor_parse_command`).
enum Lookup {
    Blank,
    /// Printed an error.
    Failed,
    /// Entry found (`info` sub-table or not), and where its arguments start.
    Found {
        info: bool,
        index: usize,
        args_at: usize,
    },
}

impl Server {
    /// Add a command to the human monitor's table (sorted by name, as QEMU sorts it). Its
    /// calls are named [`HmpCommand::call_name`]. Refused: a name already in its table
    /// (built-ins `help|?`, `info`, `info history`, `getfd`, `closefd` included), an empty
    /// name or one with spaces or `/`, an `args_type` the parser does not support.
    pub fn register_hmp(&mut self, cmd: HmpCommand) -> Result<(), ApiMisuse> {
        self.hmp_table.register(cmd)
    }

    /// The embedder's HMP commands (sorted by name, top-level table first).
    pub fn registered_hmp_commands(&self) -> impl Iterator<Item = &HmpCommand> {
        self.hmp_table.embedder_commands()
    }

    /// Whether QMP `human-monitor-command` is the core's
    /// ([`Server::register_human_monitor_command`]).
    pub fn has_human_monitor_command(&self) -> bool {
        self.registry
            .get(b"human-monitor-command")
            .is_some_and(|e| e.builtin == Some(QmpBuiltin::HumanMonitorCommand))
    }

    /// The HMP command a call of this name runs, if it is one of the embedder's.
    pub fn hmp_command_of_call(&self, call: &str) -> Option<&HmpCommand> {
        self.hmp_table.by_call(call).map(|e| &e.cmd)
    }

    /// Whether this monitor is a human monitor.
    pub fn is_hmp(&self, m: MonitorId) -> bool {
        self.monitors.get(&m).is_some_and(|m| m.hmp.is_some())
    }

    /// The line being typed on a human monitor (empty for others).
    pub fn hmp_line(&self, m: MonitorId) -> &[u8] {
        self.monitors
            .get(&m)
            .and_then(|m| m.hmp.as_deref())
            .map_or(&[], ReadLine::line)
    }

    /// `monitor_event(CHR_EVENT_OPENED)` of a human monitor: created by its first `OpenHmp`
    /// (the history then lives as long as the monitor), the banner, a restarted line and the
    /// prompt.
    pub(super) fn open_hmp(&mut self, id: MonitorId) {
        self.opens += 1;
        let generation = self.opens;
        if !self.monitors.contains_key(&id) {
            let streamer = JsonStreamer::new(self.config.json_limits);
            let mut m = Monitor::new(id, Default::default(), streamer, generation);
            m.hmp = Some(Box::default());
            self.monitors.insert(m);
            self.rr.insert(0, id);
        } else {
            self.probes.reopened += 1;
            if self.inband_call_of(id) {
                self.probes.reopened_while_call_runs += 1;
            }
        }
        let mut out = format!(
            "QEMU {} monitor - type 'help' for more information\r\n",
            self.qemu_version_text()
        )
        .into_bytes();
        if let Some(m) = self.monitors.get_mut(&id) {
            m.open = true;
            m.generation = generation;
            if let Some(rl) = m.hmp.as_deref_mut() {
                rl.restart();
                rl.show_prompt(&mut out);
            }
        }
        self.open_monitors += 1;
        self.append_message(id, &out);
    }

    /// `QEMU_VERSION` from the configured version object (`major.minor.micro`).
    fn qemu_version_text(&self) -> String {
        let q = self.config.version.as_object().and_then(|o| o.get("qemu"));
        let part = |k: &str| {
            q.and_then(Value::as_object)
                .and_then(|o| o.get(k))
                .and_then(Value::as_i64)
                .unwrap_or(0)
        };
        format!("{}.{}.{}", part("major"), part("minor"), part("micro"))
    }

    /// Feed buffered bytes to the line editor until they are used up, the monitor is
    /// suspended (a line was queued) or it is gone.
    pub(super) fn pump_hmp(&mut self, id: MonitorId) {
        let preconfig = self.run_state == RunState::Preconfig;
        let mut echo = Vec::new();
        // Bounded: every pass consumes at least one byte or returns.
        loop {
            let Some(m) = self.monitors.get_mut(&id) else {
                return;
            };
            if !m.live() || m.suspend_count > 0 || m.input.is_empty() {
                break;
            }
            let fds = m.input.take_front_fds();
            if !fds.is_empty() {
                self.deliver_fds(id, fds);
            }
            let Some(m) = self.monitors.get_mut(&id) else {
                return;
            };
            let front = m.input.front();
            let Some(rl) = m.hmp.as_deref_mut() else {
                return;
            };
            let table = &self.hmp_table;
            let mut complete = |line: &[u8]| help::complete(table, line, preconfig);
            let mut n = 0;
            let mut line = None;
            for &b in front {
                n += 1;
                line = rl.handle_byte(b, &mut echo, &mut complete);
                if line.is_some() {
                    break;
                }
            }
            m.input.consume(n);
            if let Some(line) = line {
                if !echo.is_empty() {
                    self.append_message(id, &echo);
                    echo.clear();
                }
                self.enqueue(id, Queued::Hmp(line));
            }
        }
        if !echo.is_empty() {
            self.append_message(id, &echo);
        }
    }

    /// Print on a human monitor (`monitor_puts`).
    fn hmp_print(&mut self, id: MonitorId, text: &[u8]) {
        if text.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(text.len() + 8);
        if planted!(self, HmpBareNewline) {
            out.extend_from_slice(text);
        } else {
            hmp::puts(text, &mut out);
        }
        self.append_message(id, &out);
    }

    /// The monitor's suspend count went to 0: restart the line and print the prompt.
    pub(super) fn hmp_prompt(&mut self, id: MonitorId) {
        let Some(rl) = self
            .monitors
            .get_mut(&id)
            .and_then(|m| m.hmp.as_deref_mut())
        else {
            return;
        };
        let mut out = Vec::new();
        rl.restart();
        rl.show_prompt(&mut out);
        self.append_message(id, &out);
    }

    /// QEMU's `monitor_parse_command`, over the top table and then `info`'s.
    fn hmp_lookup(&mut self, line: &[u8], preconfig: bool, out: &mut Vec<u8>) -> Lookup {
        let mut p = 0;
        let mut info = false;
        let mut found: Option<usize> = None;
        loop {
            while is_space(at(line, p)) {
                p += 1;
            }
            if at(line, p) == 0 {
                return match found {
                    None => Lookup::Blank,
                    // Unreachable: a sub-table is only searched with something after it.
                    Some(index) => Lookup::Found {
                        info,
                        index,
                        args_at: p,
                    },
                };
            }
            let start = p;
            while at(line, p) != 0 && at(line, p) != b'/' && !is_space(at(line, p)) {
                p += 1;
            }
            let name = &line[start..p.min(start + CMD_NAME_MAX)];
            let cmds = self.hmp_table.entries(info);
            let Some(index) = cmds
                .iter()
                .position(|e| hmp::compare_cmd(name, &e.cmd.name))
            else {
                out.extend_from_slice(b"unknown command: '");
                out.extend_from_slice(&line[..p]);
                out.extend_from_slice(b"'\n");
                return Lookup::Failed;
            };
            if !help::available(&cmds[index], preconfig) {
                out.extend_from_slice(b"Command '");
                out.extend_from_slice(&line[..p]);
                out.extend_from_slice(
                    b"' not available until machine initialization has completed.\n",
                );
                return Lookup::Failed;
            }
            while is_space(at(line, p)) {
                p += 1;
            }
            let sub = !info && cmds[index].builtin == Some(Builtin::Info);
            if sub && at(line, p) != 0 {
                info = true;
                found = Some(index);
                continue;
            }
            return Lookup::Found {
                info,
                index,
                args_at: p,
            };
        }
    }

    /// `handle_hmp_command` for a line the dispatcher took.
    pub(super) fn hmp_execute(&mut self, mid: MonitorId, line: Vec<u8>) -> Executed {
        let mut out = Vec::new();
        match self.hmp_run(mid, &line, true, &mut out) {
            Run::Done => {
                self.hmp_print(mid, &out);
                Executed::Answered
            }
            Run::Call(command, args) => Executed::Called(self.hmp_call(mid, command, args, None)),
        }
    }

    /// QMP `human-monitor-command` (`qmp_human_monitor_command`): the line runs on a
    /// non-interactive human monitor whose output becomes the reply's string. A `cpu-index`
    /// is refused: the core knows no CPUs.
    pub(super) fn hmp_passthrough(
        &mut self,
        mid: MonitorId,
        id: Option<Value>,
        args: &Object,
        oob: bool,
    ) -> Executed {
        if args.contains_key("cpu-index") {
            let desc = "Parameter 'cpu-index' expects a CPU number";
            self.reply_error(mid, id, ErrorClass::GenericError, desc, oob);
            return Executed::Answered;
        }
        let line = args
            .get("command-line")
            .and_then(Value::as_json_string)
            .map(|s| s.as_bytes().to_vec())
            .unwrap_or_default();
        let mut out = Vec::new();
        match self.hmp_run(mid, &line, false, &mut out) {
            Run::Done => {
                let mut text = Vec::with_capacity(out.len() + 8);
                hmp::puts(&out, &mut text);
                self.reply_return(mid, id, Value::string(text), oob);
                Executed::Answered
            }
            Run::Call(command, args) => {
                Executed::Called(self.hmp_call(mid, command, args, Some(id)))
            }
        }
    }

    /// Look the line up and parse it; print errors and run built-ins into `out` (with `\n`
    /// line ends), or hand back the embedder's call.
    fn hmp_run(
        &mut self,
        mid: MonitorId,
        line: &[u8],
        interactive: bool,
        out: &mut Vec<u8>,
    ) -> Run {
        // A C string ends at its first NUL (only `human-monitor-command` can pass one).
        let line = match line.iter().position(|&b| b == 0) {
            Some(n) => &line[..n],
            None => line,
        };
        let preconfig = self.run_state == RunState::Preconfig;
        let (info, index, args_at) = match self.hmp_lookup(line, preconfig, out) {
            Lookup::Blank | Lookup::Failed => return Run::Done,
            Lookup::Found {
                info,
                index,
                args_at,
            } => (info, index, args_at),
        };
        let entry = &self.hmp_table.entries(info)[index];
        if entry.cmd.unavailable {
            out.extend_from_slice(b"Command \"");
            out.extend_from_slice(&line[..args_at]);
            out.extend_from_slice(b"\" is not available.\n");
            return Run::Done;
        }
        let (name, args_type) = (entry.cmd.name.clone(), entry.cmd.args_type.clone());
        let args = match hmp::parse_arguments(&name, &args_type, line, args_at, &mut self.hmp_fmt) {
            Ok(a) => a,
            Err(e) => {
                out.extend_from_slice(&e);
                let mut q = args_at;
                while q > 0 && is_space(line[q - 1]) {
                    q -= 1;
                }
                out.extend_from_slice(b"Try \"help ");
                out.extend_from_slice(&line[..q]);
                out.extend_from_slice(b"\" for more information\n");
                return Run::Done;
            }
        };
        let entry = &self.hmp_table.entries(info)[index];
        match entry.builtin {
            Some(b) => {
                self.hmp_builtin(mid, b, &args, preconfig, interactive, out);
                Run::Done
            }
            None => Run::Call(entry.call.clone(), args),
        }
    }

    fn hmp_builtin(
        &mut self,
        mid: MonitorId,
        b: Builtin,
        args: &Object,
        preconfig: bool,
        interactive: bool,
        out: &mut Vec<u8>,
    ) {
        match b {
            Builtin::Help => {
                let name = args.get("name").and_then(Value::as_json_string);
                help::help(&self.hmp_table, name.map(|n| n.as_bytes()), preconfig, out);
            }
            Builtin::Info => help::help(&self.hmp_table, Some(b"info"), preconfig, out),
            // A non-interactive monitor has no line editor, so no history.
            Builtin::InfoHistory if !interactive => {}
            Builtin::InfoHistory => {
                if let Some(rl) = self.monitors.get(&mid).and_then(|m| m.hmp.as_deref()) {
                    for (i, h) in rl.history().iter().enumerate() {
                        out.extend_from_slice(format!("{i}: '").as_bytes());
                        out.extend_from_slice(h);
                        out.extend_from_slice(b"'\n");
                    }
                }
            }
            // The non-interactive monitor has no connection: no descriptor comes with it, and
            // it has no named descriptors.
            Builtin::Getfd if !interactive => {
                out.extend_from_slice(b"Error: No file descriptor supplied via SCM_RIGHTS\n");
            }
            Builtin::Closefd if !interactive => {
                let name = args.get("fdname").and_then(Value::as_json_string);
                out.extend_from_slice(b"Error: File descriptor named '");
                out.extend_from_slice(name.map_or(&b""[..], |n| n.as_bytes()));
                out.extend_from_slice(b"' not found\n");
            }
            Builtin::Getfd | Builtin::Closefd => {
                let qb = if b == Builtin::Getfd {
                    QmpBuiltin::Getfd
                } else {
                    QmpBuiltin::Closefd
                };
                if let Err((_, desc)) = self.run_builtin(mid, qb, args) {
                    out.extend_from_slice(b"Error: ");
                    out.extend_from_slice(&desc);
                    out.push(b'\n');
                }
            }
        }
    }

    /// Issue an embedder's HMP command as the in-band call; `capture` holds the QMP request's
    /// id when it runs for `human-monitor-command`.
    fn hmp_call(
        &mut self,
        mid: MonitorId,
        command: super::CommandName,
        args: Object,
        capture: Option<Option<Value>>,
    ) -> CallId {
        let call = CallId(self.next_call);
        self.next_call += 1;
        self.inband_call = Some(call);
        let generation = self.monitors.get(&mid).map_or(0, |m| m.generation);
        self.calls.insert(
            call,
            PendingCall {
                info: OutstandingCall {
                    id: call,
                    monitor: mid,
                    lane: Lane::InBand,
                    command: command.clone(),
                },
                hmp_capture: capture.is_some(),
                request_id: capture.flatten(),
                success_response: true,
                resume_on_complete: false,
                generation,
            },
        );
        self.digest.word(2);
        self.digest.word(call.0);
        self.digest.word(mid.0);
        self.digest.word(Lane::InBand as u64);
        self.digest.bytes(command.as_bytes());
        self.digest.word(args.len() as u64);
        for (k, v) in args.iter() {
            self.digest.bytes(k.as_bytes());
            self.digest.value(v);
        }
        self.outputs.push_back(Output::Call(Call {
            id: call,
            monitor: mid,
            lane: Lane::InBand,
            command,
            arguments: args,
        }));
        call
    }

    /// An HMP command's handler finished: print its text, or `Error: <desc>`.
    pub(super) fn hmp_result(&mut self, mid: MonitorId, result: CallResult) {
        let text = result_text(result);
        self.hmp_print(mid, &text);
    }

    /// An HMP command run by `human-monitor-command` finished: its text is the reply.
    pub(super) fn hmp_capture_result(
        &mut self,
        mid: MonitorId,
        id: Option<Value>,
        result: CallResult,
        oob: bool,
    ) {
        let mut text = Vec::new();
        hmp::puts(&result_text(result), &mut text);
        self.reply_return(mid, id, Value::string(text), oob);
    }

    /// Register QMP `human-monitor-command` (`{"command-line": str, "cpu-index"?: int}`) as a
    /// command the core runs on the HMP table: errors and built-ins are answered at once, the
    /// embedder's HMP commands are called as `hmp <name>` in-band calls from the QMP monitor,
    /// and what they print is the reply (a success, whatever was printed, as in QEMU). Like
    /// QEMU 7.2 it has no `allow-preconfig`. Refused when the name is already registered.
    pub fn register_human_monitor_command(&mut self) -> Result<(), ApiMisuse> {
        self.registry.register_builtin(
            human_monitor_command_spec(),
            QmpBuiltin::HumanMonitorCommand,
        )
    }

    /// Whether the HMP command of this outstanding call may suspend its monitor (QEMU's
    /// `monitor_suspend`): only on an interactive human monitor. A command run through
    /// `human-monitor-command` is refused (`-ENOTTY` in QEMU), as are QMP calls and calls
    /// not outstanding.
    pub fn hmp_call_can_suspend(&self, call: CallId) -> bool {
        self.calls.get(&call).is_some_and(|pc| {
            !pc.hmp_capture
                && self
                    .monitors
                    .get(&pc.info.monitor)
                    .is_some_and(|m| m.hmp.is_some() && m.generation == pc.generation)
        })
    }
}

/// The spec of the core's QMP `human-monitor-command`
/// ([`Server::register_human_monitor_command`]): QEMU 7.2's arguments and its `str` return.
pub fn human_monitor_command_spec() -> CommandSpec {
    let mut spec = CommandSpec::new("human-monitor-command")
        .arg("command-line", ArgType::String)
        .opt("cpu-index", ArgType::Int)
        .returns(ArgType::String);
    // QEMU 7.2's schema marks it so (its `savevm`/`loadvm` take monitor-owned node names).
    spec.features.push("savevm-monitor-nodes".to_owned());
    spec
}
