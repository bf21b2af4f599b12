//! `dst`: runs the deterministic simulation over many seeds and prints
//! totals (operations, successes, failures by kind, faults by kind, virtual
//! time), or replays one seed with its log.
//!
//! ```text
//! cargo run --release -p omv-tests --bin dst -- --seeds 20000 [--start 0]
//! cargo run --release -p omv-tests --bin dst -- --seed 1234 --trace [--lines 400] [--deliveries]
//! ```

use std::process::ExitCode;

use omv_tests::dst::{run_many, run_seed, Options};

const USAGE: &str =
    "usage: dst [--seeds N] [--start S] | --seed S [--trace] [--lines N] [--deliveries]";

fn parse(args: &[String], i: usize) -> Result<u64, String> {
    args.get(i + 1)
        .ok_or_else(|| format!("{} needs a value\n{USAGE}", args[i]))?
        .parse()
        .map_err(|e| format!("{}: {e}\n{USAGE}", args[i]))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut seeds, mut start, mut one, mut lines) = (1000u64, 0u64, None, 300u64);
    let (mut trace, mut deliveries) = (false, false);
    let mut i = 0;
    while i < args.len() {
        let r = match args[i].as_str() {
            "--seeds" => parse(&args, i).map(|v| seeds = v),
            "--start" => parse(&args, i).map(|v| start = v),
            "--seed" => parse(&args, i).map(|v| one = Some(v)),
            "--lines" => parse(&args, i).map(|v| lines = v),
            "--trace" => {
                trace = true;
                i -= 1;
                Ok(())
            }
            "--deliveries" => {
                trace = true;
                deliveries = true;
                i -= 1;
                Ok(())
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown argument {other}\n{USAGE}")),
        };
        if let Err(e) = r {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
        i += 2;
    }
    if let Some(seed) = one {
        let opts = Options {
            trace_lines: if trace { lines as usize } else { 0 },
            trace_deliveries: deliveries,
        };
        if trace {
            omv_tests::dst::trace::capture_session_log();
        }
        let o = run_seed(seed, &opts);
        if trace {
            for l in &o.log {
                println!("{l}");
            }
        }
        println!(
            "seed {seed}: {} ops ({} ok), trace hash {:016x}",
            o.stats.ops, o.stats.ok, o.trace_hash
        );
        return match &o.violation {
            None => ExitCode::SUCCESS,
            Some(_) => {
                eprint!("{}", o.report());
                ExitCode::FAILURE
            }
        };
    }
    let step = (seeds / 20).max(1);
    let totals = run_many(start, seeds, &Options::default(), |o| {
        let s = o.seed.unwrap_or(0);
        if let Some(v) = &o.violation {
            eprintln!("seed {s} FAILED: {v}\n  replay: {}", o.replay_command());
        }
        if (s - start + 1) % step == 0 {
            eprintln!("... {} / {seeds} seeds", s - start + 1);
        }
    });
    print!("{totals}");
    if totals.failed_seeds.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
