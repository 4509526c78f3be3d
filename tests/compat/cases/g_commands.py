"""The demo machine's commands against QEMU 7.2's: returns, parameter errors (spec §4.5,
Appendix A groups G and R) and human-monitor-command (§11.3, G8-G10)."""

import re

from cases import cmd

HMP = b'{"execute": "human-monitor-command", "arguments": {"command-line": "%s"}, "id": "h"}\n'
YANK = b'{"execute": "yank", "arguments": %s}\n'

# The commands qmpd implements that exist in QEMU 7.2 too (test commands excluded).
SHARED_COMMANDS = sorted([
    "qmp_capabilities", "query-version", "query-status", "query-name", "stop", "cont",
    "query-commands", "query-yank", "yank", "migrate-pause", "human-monitor-command", "getfd",
    "closefd", "add-fd", "remove-fd", "query-fdsets", "system_powerdown", "quit"])


def _shared_commands_only(data):
    """query-commands: keep the names both servers implement, sorted (the order is internal)."""
    def fix(m):
        names = re.findall(rb'\{"name": "([^"]+)"\}', m.group(0))
        kept = sorted(n for n in names if n.decode() in SHARED_COMMANDS)
        return b'{"return": [' + b", ".join(b'{"name": "%s"}' % n for n in kept) + b"]"
    return re.sub(rb'\{"return": \[(\{"name": "[^"]+"\}(, )?)*\]', fix, data)


CASES = [
    cmd("G1", "unexpected parameter", b'{"execute": "query-status", "arguments": {"a": 1}}\n'),
    cmd("G2", "missing parameter", b'{"execute": "human-monitor-command", "id": 2}\n'),
    cmd("G3", "wrong parameter type",
        b'{"execute": "human-monitor-command", "arguments": {"command-line": 1}}\n'),
    cmd("G4", "bad enum value in list",
        b'{"execute": "qmp_capabilities", "arguments": {"enable": ["bogus"]}}\n'),
    cmd("G5", "qmp_capabilities with valid args after negotiation",
        b'{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}\n'),
    cmd("G8", "human-monitor-command info version", HMP % b"info version", hmp_version=True),
    cmd("G9", "human-monitor-command unknown command", HMP % b"frobnicate"),
    cmd("G10", "human-monitor-command empty line", HMP % b""),
    cmd("G10a", "human-monitor-command info status running and paused", HMP % b"info status",
        (b'{"execute": "stop"}\n', 2), HMP % b"info status"),
    cmd("G10b", "human-monitor-command help", HMP % b"help"),
    cmd("G10c", "human-monitor-command cpu-index not an integer",
        b'{"execute": "human-monitor-command", "arguments": {"command-line": "info status", '
        b'"cpu-index": "x"}}\n'),
    cmd("G10d", "human-monitor-command bad cpu-index",
        b'{"execute": "human-monitor-command", "arguments": {"command-line": "info status", '
        b'"cpu-index": 3}}\n'),
    cmd("G10e", "human-monitor-command unexpected argument",
        b'{"execute": "human-monitor-command", "arguments": {"command-line": "", "x": 1}}\n'),
    cmd("G10f", "human-monitor-command leading spaces and unknown info",
        HMP % b"  info   status", HMP % b"info nosuch"),
    cmd("G11", "query-version with empty arguments",
        b'{"execute": "query-version", "arguments": {}}\n'),
    cmd("G12", "query-name", b'{"execute": "query-name", "id": "cookie#1"}\n'),
    cmd("G13", "query-status", b'{"execute": "query-status"}\n'),
    cmd("G14", "stop and cont with unexpected arguments",
        b'{"execute": "stop", "arguments": {"x": 1}}\n',
        b'{"execute": "cont", "arguments": {"x": null}}\n'),
    cmd("G15", "query-commands (shared commands, sorted)", b'{"execute": "query-commands"}\n',
        normalize=_shared_commands_only),
    cmd("B29", "exec-oob query-yank", b'{"exec-oob": "query-yank", "id": "o3"}\n'),
    cmd("G16", "query-yank in-band", b'{"execute": "query-yank"}\n'),
    cmd("G17", "yank empty list in-band and OOB", YANK % b'{"instances": []}',
        b'{"exec-oob": "yank", "arguments": {"instances": []}, "id": 1}\n'),
    cmd("G18", "yank parameter errors", b'{"execute": "yank"}\n', YANK % b'{"instances": {}}',
        YANK % b'{"instances": [1]}', YANK % b'{"instances": [{"type": "bogus"}]}',
        YANK % b'{"instances": [{"type": "chardev"}]}', YANK % b'{"instances": [{}]}'),
    cmd("G19", "yank unknown instances",
        YANK % b'{"instances": [{"type": "chardev", "id": "nope"}]}',
        YANK % b'{"instances": [{"type": "block-node", "node-name": "n"}]}',
        YANK % b'{"instances": [{"type": "migration"}]}'),
    cmd("G20", "yank the monitor's own chardev (as named by query-yank)",
        YANK % b'{"instances": [{"type": "chardev", "id": "compat_monitor0"}]}',
        (b'{"execute": "query-name"}\n', 0)),
    cmd("G21", "migrate-pause in-band and with arguments",
        b'{"execute": "migrate-pause", "id": 1}\n',
        b'{"execute": "migrate-pause", "arguments": {"x": 1}}\n'),
    cmd("G22", "system_powerdown with arguments",
        b'{"execute": "system_powerdown", "arguments": {"a": 1}}\n'),
    cmd("G23", "quit with arguments", b'{"execute": "quit", "arguments": {"a": 1}}\n'),
    cmd("G24", "query-fdsets with arguments",
        b'{"execute": "query-fdsets", "arguments": {"a": 1}}\n'),
    cmd("G25", "x-oob-test is not a QEMU 7.2 command",
        b'{"execute": "x-oob-test", "arguments": {"lock": false}}\n'),
    cmd("G26", "parameter checks come before the OOB check",
        b'{"exec-oob": "query-yank", "arguments": {"a": 1}}\n'),
    cmd("G27", "exec-oob migrate-pause with an unexpected argument",
        b'{"exec-oob": "migrate-pause", "arguments": {"a": 1}}\n'),
    cmd("G28", "human-monitor-command info name, help nosuch",
        HMP % b"info name", HMP % b"help nosuch"),
    cmd("G28a", "human-monitor-command help for one info subcommand", HMP % b"help info status"),
    cmd("G29", "human-monitor-command stop and cont: events, empty return",
        (HMP % b"stop", 2), HMP % b"info status", (HMP % b"cont", 2), (HMP % b"c", 1),
        (HMP % b"s", 2)),
    cmd("G30", "human-monitor-command stop with extraneous characters",
        HMP % b"stop now", HMP % b"info status"),
    cmd("G30a", "human-monitor-command info/help with extraneous characters",
        HMP % b"info status now", HMP % b"help stop extra"),
    cmd("G31", "human-monitor-command help for one command", HMP % b"help stop",
        HMP % b"help cont", HMP % b"help help"),
    cmd("G32", "human-monitor-command info alone and help info (full listings)",
        HMP % b"info", HMP % b"help info"),
    cmd("G33", "human-monitor-command system_powerdown", (HMP % b"system_powerdown", 2)),
]
