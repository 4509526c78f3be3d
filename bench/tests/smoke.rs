//! Smoke test of every qmp-bench mode for a fraction of a second against a tiny in-test QMP
//! server, and against qmpd too when its binary has been built, so the tool cannot
//! rot while `make bench` is not part of `make test`.

mod fake;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use qmp_bench::{Mode, OobMethod, Opts};

fn opts(path: PathBuf) -> Opts {
    Opts {
        label: "fake".into(),
        sockets: vec![path],
        duration: Duration::from_millis(150),
        io_timeout: Duration::from_secs(10),
        clients: 4,
        idle_clients: 50,
        large_size: 64 * 1024,
        pid: Some(std::process::id()),
        ..Opts::default()
    }
}

#[test]
fn every_mode_runs_against_the_fake_server() {
    let server = fake::start(fake::Lock::Works);
    let o = opts(server.path.clone());
    for mode in Mode::ALL {
        let out = qmp_bench::run(mode, &o).unwrap_or_else(|e| panic!("{}: {e}", mode.name()));
        assert!(out.ops > 0 && out.value > 0.0, "{}: {out:?}", mode.name());
        match mode {
            Mode::Sequential | Mode::Connections | Mode::OobLatency => {
                assert!(out.p50_us.unwrap() <= out.p99_us.unwrap());
            }
            // Every monitor (4) saw one event per stop/cont request.
            Mode::Events => {
                let requests = out.extra.iter().find(|(k, _)| *k == "requests").unwrap().1;
                assert!(requests >= 2.0 && (requests as u64) & 1 == 0);
                assert_eq!(out.ops, 4 * requests as u64);
            }
            Mode::Idle => assert_eq!(out.ops, 50),
            Mode::Large => assert!(out.value > 0.0 && out.secs > 0.0),
            Mode::Pipelined => {}
        }
    }
    let load = Opts {
        oob_method: OobMethod::Load,
        ..o
    };
    let out = qmp_bench::run(Mode::OobLatency, &load).unwrap();
    assert_eq!(out.mode, "oob-latency-load");
}

#[test]
fn lock_method_refuses_servers_that_cannot_block() {
    let missing = fake::start(fake::Lock::Missing);
    let e = qmp_bench::run(Mode::OobLatency, &opts(missing.path.clone())).unwrap_err();
    assert!(e.to_string().contains("use --oob-method load"), "{e}");

    let ignored = fake::start(fake::Lock::Ignored);
    let e = qmp_bench::run(Mode::OobLatency, &opts(ignored.path.clone())).unwrap_err();
    assert!(e.to_string().contains("should be blocked"), "{e}");
}

#[test]
fn the_binary_prints_json_lines_and_a_report() {
    let server = fake::start(fake::Lock::Works);
    let bin = env!("CARGO_BIN_EXE_qmp-bench");
    let out = Command::new(bin)
        .args(["--socket", server.path.to_str().unwrap()])
        .args([
            "--mode",
            "sequential,pipelined",
            "--duration",
            "0.1",
            "--json",
        ])
        .args(["--label", "qmpd"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["mode"], "sequential");
    assert_eq!(lines[1]["mode"], "pipelined");
    assert!(lines[1]["value"].as_f64().unwrap() > 0.0);

    let file = std::env::temp_dir().join(format!("qmp-bench-smoke-{}.jsonl", std::process::id()));
    let base = stdout.replace("\"label\":\"qmpd\"", "\"label\":\"qemu\"");
    std::fs::write(&file, format!("{stdout}{base}")).unwrap();
    let rep = Command::new(bin).arg("report").arg(&file).output().unwrap();
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8(rep.stdout).unwrap();
    let seq = text.lines().find(|l| l.starts_with("sequential")).unwrap();
    assert!(seq.contains(" 1.0x ") && seq.contains("MISSED"), "{text}");
}

/// Kills the qmpd the test started, whatever happens to the test.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs every mode against qmpd when its binary is there: `QMP_BENCH_QMPD_BIN`, or `qmpd` next
/// to this crate's binary (`cargo test --workspace` builds it into the same directory).
/// Skipped, with a message, otherwise.
#[test]
fn every_mode_runs_against_qmpd_when_built() {
    let bin = std::env::var_os("QMP_BENCH_QMPD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_BIN_EXE_qmp-bench")).with_file_name("qmpd")
        });
    if !bin.exists() {
        eprintln!("{} not built: qmpd part skipped", bin.display());
        return;
    }
    // Both of qmpd's runtimes; the test commands for the OOB mode's x-oob-test lock.
    for runtime in ["std", "tokio"] {
        let sock = std::env::temp_dir().join(format!(
            "qmp-bench-qmpd-{runtime}-{}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&sock);
        let child = Child(
            Command::new(&bin)
                .arg("--listen")
                .arg(format!("unix:{},clients=64", sock.display()))
                .args([
                    "--max-connections",
                    "80",
                    "--log",
                    "warn",
                    "--test-commands",
                ])
                .args(["--runtime", runtime])
                .spawn()
                .expect("start qmpd"),
        );
        // Bounded wait for the listener: 10 s.
        for _ in 0..200 {
            if sock.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let o = Opts {
            label: "qmpd".into(),
            pid: Some(child.0.id()),
            ..opts(sock.clone())
        };
        for mode in Mode::ALL {
            let out = qmp_bench::run(mode, &o)
                .unwrap_or_else(|e| panic!("{runtime}: {}: {e}", mode.name()));
            assert!(
                out.ops > 0 && out.value > 0.0,
                "{runtime}: {}: {out:?}",
                mode.name()
            );
        }
        drop(child);
        let _ = std::fs::remove_file(&sock);
    }
}
