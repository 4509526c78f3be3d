//! A real Rust QMP client, the `qapi` crate's synchronous `Qmp`, against the shim and the demo
//! machine: handshake, typed commands, events, errors.

mod common;

use std::os::unix::net::UnixStream;

use common::*;

#[test]
fn qapi_sync_client_talks_to_the_demo_machine() {
    let d = start(&["unix:qmp.sock"]);
    let stream = UnixStream::connect(d.path("qmp.sock")).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut qmp = qapi::Qmp::from_stream(&stream);

    let greeting = qmp.handshake().expect("handshake");
    assert_eq!(greeting.version.qemu.major, 7);
    assert_eq!(greeting.version.qemu.minor, 2);
    assert_eq!(greeting.version.qemu.micro, 22);
    assert_eq!(greeting.version.package, "test");

    let status = qmp
        .execute(&qapi::qmp::query_status {})
        .expect("query-status");
    assert!(status.running);
    assert_eq!(status.status, qapi::qmp::RunState::running);

    qmp.execute(&qapi::qmp::stop {}).expect("stop");
    let events: Vec<_> = qmp.events().collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        matches!(events[0], qapi::qmp::Event::STOP { .. }),
        "{events:?}"
    );
    let status = qmp
        .execute(&qapi::qmp::query_status {})
        .expect("query-status");
    assert!(!status.running);
    assert_eq!(status.status, qapi::qmp::RunState::paused);

    let version = qmp
        .execute(&qapi::qmp::query_version {})
        .expect("query-version");
    assert_eq!(version.qemu.micro, 22);

    let text = qmp
        .execute(&qapi::qmp::human_monitor_command {
            command_line: "info version".into(),
            cpu_index: None,
        })
        .expect("hmp");
    assert_eq!(text, "7.2.22test\r\n");

    match qmp.execute(&qapi::qmp::migrate_pause {}) {
        Err(qapi::ExecuteError::Qapi(e)) => {
            assert_eq!(e.class, qapi::ErrorClass::GenericError);
            assert_eq!(
                e.desc,
                "migrate-pause is currently only supported during postcopy-active state"
            );
        }
        other => panic!("{other:?}"),
    }
}
