"""query-qmp-schema through real clients: qemu.qmp's QMPClient and qmp-shell read the schema,
and it describes exactly the commands query-commands lists (true of QEMU 7.2 too)."""

import json
import subprocess
import sys

from qemu.qmp import QMPClient

from harness import test

META_TYPES = {"builtin", "enum", "array", "object", "alternate", "command", "event"}


def check_schema(schema, commands):
    assert isinstance(schema, list) and schema, schema
    names = {}
    for e in schema:
        assert e["meta-type"] in META_TYPES, e
        assert e["name"] not in names, "declared twice: %s" % e["name"]
        names[e["name"]] = e
    declared = {n for n, e in names.items() if e["meta-type"] == "command"}
    assert declared == set(commands), (declared ^ set(commands))
    # Every type an entry names is declared too.
    for e in schema:
        refs = [e.get(k) for k in ("arg-type", "ret-type", "element-type")]
        refs += [m.get("type") for m in e.get("members", []) + e.get("variants", [])]
        for r in refs:
            assert r is None or r in names, "%s names undeclared %s" % (e["name"], r)
    status = names["query-status"]
    assert names[status["arg-type"]]["members"] == [], status
    members = [m["name"] for m in names[status["ret-type"]]["members"]]
    assert members == ["running", "singlestep", "status"], members


@test
async def qmpclient_reads_the_schema(server):
    client = QMPClient("schema")
    await client.connect(server.path)
    try:
        schema = await client.execute("query-qmp-schema")
        commands = [c["name"] for c in await client.execute("query-commands")]
        check_schema(schema, commands)
    finally:
        await client.disconnect()


@test
def qmp_shell_reads_the_schema(server):
    proc = subprocess.run(
        [sys.executable, "-m", "qemu.qmp.qmp_shell", server.path],
        input="query-qmp-schema\nquery-commands\n", capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(line.split("(QEMU) ", 1)[1]) for line in proc.stdout.splitlines()
               if line.startswith("(QEMU) {")]
    assert len(replies) == 2, proc.stdout[:2000]
    check_schema(replies[0]["return"], [c["name"] for c in replies[1]["return"]])
