//! Decodes a raw byte stream with the host-role framer and prints one JSON
//! object per accepted packet (sequence checks off, CRC on).
//!
//! ```text
//! cargo run --release -p omv-proto --example decode -- [--input FILE] [--max-payload N] [--count-only]
//! ```
//!
//! The output format matches `scripts/stock_decode.py`, which runs the stock
//! Python host's parser, so the two can be compared byte for byte.

use std::io::{Read, Write};
use std::process::ExitCode;

use omv_proto::framer::{Frame, Framer, FramerConfig, Role};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("decode: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut input: Option<String> = None;
    // The stock parser's default (scripts/stock_decode.py): the firmware's.
    let mut max_payload: u16 = omv_proto::FIRMWARE_DEFAULT_PAYLOAD;
    let mut count_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--input" => input = Some(args.next().ok_or("--input needs a file")?),
            "--max-payload" => {
                let v = args.next().ok_or("--max-payload needs a number")?;
                max_payload = v.parse().map_err(|_| format!("bad --max-payload {v:?}"))?;
            }
            "--count-only" => count_only = true,
            "-h" | "--help" => {
                println!("usage: decode [--input FILE] [--max-payload N] [--count-only]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let mut data = Vec::new();
    match &input {
        Some(path) => {
            data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        }
        None => {
            std::io::stdin()
                .read_to_end(&mut data)
                .map_err(|e| format!("stdin: {e}"))?;
        }
    }
    let mut framer = Framer::new(FramerConfig::new(Role::Host, true, max_payload));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut packets, mut bytes) = (0u64, 0u64);
    // Feed in moderate chunks, as a serial port would deliver them.
    for chunk in data.chunks(64 * 1024) {
        framer.push(chunk);
        while let Some(frame) = framer.next(None) {
            let Frame::Packet(p) = frame else { continue };
            packets += 1;
            bytes += p.payload.len() as u64;
            if !count_only {
                let h = &p.header;
                write!(
                    out,
                    "{{\"sequence\":{},\"channel\":{},\"flags\":{},\"opcode\":{},\"payload\":\"",
                    h.sequence, h.channel.0, h.flags.0, h.opcode.0
                )
                .map_err(|e| e.to_string())?;
                for b in p.payload.iter() {
                    write!(out, "{b:02x}").map_err(|e| e.to_string())?;
                }
                writeln!(out, "\"}}").map_err(|e| e.to_string())?;
            }
        }
    }
    if count_only {
        writeln!(out, "{packets} packets, {bytes} bytes").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}
