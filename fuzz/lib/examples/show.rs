//! Prints a `scenario` input's decoded inputs and the monitors' queue, suspend count and
//! `wants_read` after each: `cargo run --manifest-path fuzz/Cargo.toml -p qmp-fuzz --example show FILE`.

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: show SCENARIO_FILE");
        std::process::exit(2);
    };
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let s = qmp_fuzz::scenario::Scenario::decode(&data);
    let mut server = qmp_core::server::Server::new(s.config.clone());
    for c in &s.registry {
        let _ = server.register(c.clone());
    }
    for (i, (now, input)) in s.inputs.iter().enumerate() {
        println!("{} {:?}", i + 1, input);
        let r = server.handle(*now, input.clone());
        while server.poll_output().is_some() {}
        for m in server.monitors().collect::<Vec<_>>() {
            println!(
                "   -> {r:?} monitor {} queue {} suspend {} wants_read {}",
                m.0,
                server.queue_len(m),
                server.suspend_count(m),
                server.wants_read(m)
            );
        }
    }
    for m in server.monitors().collect::<Vec<_>>() {
        println!(
            "monitor {} pending output:\n{}",
            m.0,
            String::from_utf8_lossy(server.pending_output(m))
        );
    }
}
