"""qemu.qmp's asyncio QMPClient: OOB negotiation, execute, exec-oob, events, fd passing,
concurrent requests, quit."""

import asyncio
import os

from qemu.qmp import ExecuteError, QMPClient

from harness import test
from targets import Monitor


async def _connect(server):
    client = QMPClient("compat")
    await client.connect(server.path)
    return client


@test
async def qmpclient_negotiates_oob_and_executes(server):
    client = await _connect(server)
    try:
        assert client.greeting is not None
        caps = client.greeting.QMP.capabilities
        assert caps == ["oob"], caps
        status = await client.execute("query-status")
        assert status == {"status": "running", "singlestep": False, "running": True}, status
        version = await client.execute("query-version")
        assert set(version) == {"qemu", "package"}, version
        assert set(version["qemu"]) == {"major", "minor", "micro"}, version
        assert await client.execute("query-name") == {}
        # QMPClient enabled oob itself: exec-oob reaches the OOB-capable query-yank.
        yank = await client.execute("query-yank", oob=True)
        assert isinstance(yank, list) and all(i["type"] == "chardev" for i in yank), yank
    finally:
        await client.disconnect()


@test
async def qmpclient_errors_come_back_as_execute_error(server):
    client = await _connect(server)
    try:
        for cmd, args, oob, klass, desc in [
            ("nope", None, False, "CommandNotFound", "The command nope has not been found"),
            ("migrate-pause", None, True, "GenericError",
             "migrate-pause is currently only supported during postcopy-active state"),
            ("query-status", None, True, "GenericError",
             "The command query-status does not support OOB"),
            ("human-monitor-command", {}, False, "GenericError",
             "Parameter 'command-line' is missing"),
        ]:
            try:
                await client.execute(cmd, args, oob=oob)
                raise AssertionError("%s did not fail" % cmd)
            except ExecuteError as e:
                assert e.error_class == klass and e.error.error.desc == desc, (cmd, e.error)
        # The session is still usable afterwards.
        assert await client.execute("query-name") == {}
    finally:
        await client.disconnect()


@test
async def qmpclient_receives_events_in_order(server):
    client = await _connect(server)
    try:
        with client.listener(("STOP", "RESUME", "POWERDOWN")) as listener:
            assert await client.execute("stop") == {}
            assert (await client.execute("query-status"))["status"] == "paused"
            assert await client.execute("cont") == {}
            assert await client.execute("system_powerdown") == {}
            names = []
            for _ in range(3):
                ev = await asyncio.wait_for(listener.get(), 5)
                assert set(ev["timestamp"]) == {"seconds", "microseconds"}, ev
                names.append(ev["event"])
            assert names == ["STOP", "RESUME", "POWERDOWN"], names
    finally:
        await client.disconnect()


@test
async def qmpclient_pipelines_concurrent_requests(server):
    client = await _connect(server)
    try:
        # 40 requests in flight at once (more than the in-band queue's 8), mixed with OOB.
        calls = [client.execute("query-name") for _ in range(30)]
        calls += [client.execute("query-yank", oob=True) for _ in range(10)]
        calls += [client.execute("human-monitor-command", {"command-line": "info status"})]
        results = await asyncio.gather(*calls)
        assert results[:30] == [{}] * 30
        assert all(isinstance(r, list) for r in results[30:40])
        assert results[40] == "VM status: running\r\n", results[40]
    finally:
        await client.disconnect()


@test
async def qmpclient_passes_fds(server):
    client = await _connect(server)
    r, w = os.pipe()
    try:
        client.send_fd_scm(r)
        assert await client.execute("getfd", {"fdname": "pipe"}) == {}
        assert await client.execute("closefd", {"fdname": "pipe"}) == {}
        client.send_fd_scm(r)
        added = await client.execute("add-fd", {"fdset-id": 2, "opaque": "mine"})
        assert set(added) == {"fd", "fdset-id"} and added["fdset-id"] == 2, added
        sets = await client.execute("query-fdsets")
        assert sets == [{"fds": [{"fd": added["fd"], "opaque": "mine"}], "fdset-id": 2}], sets
        assert await client.execute("remove-fd", {"fdset-id": 2}) == {}
        assert await client.execute("query-fdsets") == []
    finally:
        os.close(r)
        os.close(w)
        await client.disconnect()


@test
async def qmpclient_quit_ends_session_and_server(server):
    client = await _connect(server)
    with client.listener("SHUTDOWN") as listener:
        try:
            await client.execute("quit")
        except Exception:  # the reply may race with EOF in the client library
            pass
        ev = await asyncio.wait_for(listener.get(), 5)
        assert ev["data"] == {"guest": False, "reason": "host-qmp-quit"}, ev
    try:
        await client.disconnect()
    except EOFError:  # the server closed first: that is what quit does
        pass
    assert server.exited(), "server still running after quit"


@test(qmpd_only="x-emit-event is qmpd's test command")
async def qmpclient_throttled_events_via_x_emit_event(server):
    client = await _connect(server)
    try:
        with client.listener("RTC_CHANGE") as listener:
            for offset in (1, 2, 3):
                await client.execute("x-emit-event",
                                     {"event": "RTC_CHANGE", "data": {"offset": offset}})
            first = await asyncio.wait_for(listener.get(), 2)
            assert first["data"] == {"offset": 1}, first
            # The burst's last event comes at the end of the 1 s period; the middle one is lost.
            last = await asyncio.wait_for(listener.get(), 3)
            assert last["data"] == {"offset": 3}, last
            assert listener.empty()
    finally:
        await client.disconnect()


@test(monitors=[Monitor(tcp=True), Monitor()])
async def qmpclient_over_tcp_sees_events_from_unix_client(server):
    tcp, unix = QMPClient("tcp"), QMPClient("unix")
    await tcp.connect(server.paths[0])
    await unix.connect(server.paths[1])
    try:
        with tcp.listener("STOP") as listener:
            assert await unix.execute("stop") == {}
            ev = await asyncio.wait_for(listener.get(), 5)
            assert ev["event"] == "STOP", ev
        assert (await tcp.execute("query-status"))["running"] is False
    finally:
        await tcp.disconnect()
        await unix.disconnect()


@test(monitors=[Monitor(clients=2)], qmpd_only="clients=N is a qmpd listener option")
async def qmpclient_two_clients_on_one_listener(server):
    a, b = QMPClient("a"), QMPClient("b")
    await a.connect(server.path)
    await b.connect(server.path)  # with clients=1 this would wait in the backlog
    try:
        with a.listener("STOP") as la, b.listener("STOP") as lb:
            assert await b.execute("stop") == {}
            for listener in (la, lb):
                ev = await asyncio.wait_for(listener.get(), 5)
                assert ev["event"] == "STOP", ev
        # Each client is its own monitor: b's named fd is not a's.
        r, w = os.pipe()
        try:
            b.send_fd_scm(r)
            assert await b.execute("getfd", {"fdname": "bfd"}) == {}
        finally:
            os.close(r)
            os.close(w)
        try:
            await a.execute("closefd", {"fdname": "bfd"})
            raise AssertionError("a closed b's fd")
        except ExecuteError as e:
            assert e.error.error.desc == "File descriptor named 'bfd' not found", e.error
        assert await b.execute("closefd", {"fdname": "bfd"}) == {}
    finally:
        await a.disconnect()
        await b.disconnect()
