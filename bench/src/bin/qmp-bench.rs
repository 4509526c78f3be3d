//! The `qmp-bench` command: runs the requested modes and prints a table (or JSON lines), or
//! compares result files (`qmp-bench report`).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use qmp_bench::opts::{self, USAGE};
use qmp_bench::stats::TABLE_HEADER;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("report") {
        return report(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("floor-server") {
        let Some(path) = args.get(1) else {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        };
        return match qmp_bench::floor::serve(std::path::Path::new(path)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("qmp-bench floor-server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let opts = match opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("qmp-bench: {e}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let table = |line: &str| {
        if opts.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    table(TABLE_HEADER);
    let mut failed = false;
    for &mode in &opts.modes {
        match qmp_bench::run(mode, &opts) {
            Ok(outcome) => {
                table(&outcome.to_row());
                if opts.json {
                    println!("{}", outcome.to_json());
                }
            }
            Err(e) => {
                eprintln!("qmp-bench: {} against {}: {e}", mode.name(), opts.label);
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn report(args: &[String]) -> ExitCode {
    let mut files = Vec::new();
    let mut subject = "qmpd".to_string();
    let mut base = "qemu".to_string();
    let mut targets = qmp_bench::report::Targets::Issue7;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.clone().next()) {
            ("--subject", Some(v)) => {
                subject = v.clone();
                it.next();
            }
            ("--base", Some(v)) => {
                base = v.clone();
                it.next();
            }
            ("--targets", Some(v)) => {
                let Some(t) = qmp_bench::report::Targets::parse(v) else {
                    eprintln!("qmp-bench: --targets {v}: issue7 or tokio");
                    return ExitCode::from(2);
                };
                targets = t;
                it.next();
            }
            _ => files.push(a.clone()),
        }
    }
    if files.is_empty() {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    }
    let mut all = String::new();
    for f in &files {
        match std::fs::read_to_string(f) {
            Ok(s) => all.push_str(&s),
            Err(e) => {
                eprintln!("qmp-bench: {f}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    print!(
        "{}",
        qmp_bench::report::compare_with(&all, &subject, &base, targets)
    );
    ExitCode::SUCCESS
}
