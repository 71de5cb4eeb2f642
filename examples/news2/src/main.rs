//! news2: the National Early Warning Score 2 for a CSV of patient vital signs.
//!
//! Usage: `news2 [FILE]` reads FILE, or stdin when no FILE is given.
//!
//! Input: a CSV whose first non-blank line is exactly this header
//!
//! ```text
//! patient_id,resp_rate,spo2,on_oxygen,temp_c,systolic_bp,heart_rate,consciousness
//! ```
//!
//! followed by one row per observation set.  Fields are separated by commas
//! and surrounding spaces are ignored; quoting is not supported, so a
//! patient_id may not contain a comma or a double quote.  Blank lines are
//! skipped and CRLF line endings are accepted.
//!
//! * resp_rate, spo2, systolic_bp, heart_rate: non-negative whole numbers
//!   (breaths/min, %, mmHg, beats/min);
//! * on_oxygen: `yes`/`no` (also `y`/`n`, `true`/`false`, `1`/`0`);
//! * temp_c: a decimal number of degrees Celsius, e.g. `37.2`;
//! * consciousness: one letter of ACVPU (Alert, new Confusion, responds to
//!   Voice, responds to Pain, Unresponsive).
//!
//! Output: `patient_id,score,risk` with one line per input row, in order.
//!
//! Exit status: 0 on success; 2 if any row is malformed (nothing is printed to
//! stdout in that case, and stderr names the line); 1 if the input cannot be
//! read or the output cannot be written; 64 on a usage error.
//!
//! # Scoring
//!
//! Source: Royal College of Physicians. National Early Warning Score (NEWS) 2:
//! Standardising the assessment of acute-illness severity in the NHS. Updated
//! report of a working party. London: RCP, 2017.  Chart 1 (the NEWS2 scoring
//! system), using SpO2 scale 1.  SpO2 scale 2, for patients with a prescribed
//! target of 88-92 % (hypercapnic respiratory failure), is not implemented: it
//! needs a clinical decision that the input does not carry.
//!
//! ```text
//! Parameter              3        2        1          0          1          2          3
//! Respiration rate /min  <=8               9-11       12-20                 21-24      >=25
//! SpO2 scale 1 %         <=91     92-93    94-95      >=96
//! Air or oxygen?                  Oxygen              Air
//! Systolic BP mmHg       <=90     91-100   101-110    111-219                          >=220
//! Pulse /min             <=40              41-50      51-90      91-110     111-130    >=131
//! Consciousness                                       Alert                            CVPU
//! Temperature C          <=35.0            35.1-36.0  36.1-38.0  38.1-39.0  >=39.1
//! ```
//!
//! Temperature bands are given to one decimal place in the chart; they are
//! applied here as thresholds (e.g. above 35.0 and at most 36.0 scores 1), so
//! a reading with more decimals falls in the band that contains it.
//!
//! Clinical risk (chart 2 of the same report): an aggregate of 7 or more is
//! high; 5-6 is medium; otherwise a score of 3 in any single parameter (a "red
//! score") is low-medium; anything else (aggregate 0-4) is low.

use std::env;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::process;

const HEADER: &str =
    "patient_id,resp_rate,spo2,on_oxygen,temp_c,systolic_bp,heart_rate,consciousness";
const COLUMNS: usize = 8;

const EXIT_IO: i32 = 1;
const EXIT_MALFORMED: i32 = 2;
const EXIT_USAGE: i32 = 64;

/// Plausibility bounds: values outside them are data-entry errors, not
/// observations, and are refused rather than scored.
const MAX_RESP_RATE: u32 = 100;
const MAX_SPO2: u32 = 100;
const MAX_SYSTOLIC_BP: u32 = 350;
const MAX_HEART_RATE: u32 = 350;
const MIN_TEMP_C: f64 = 20.0;
const MAX_TEMP_C: f64 = 45.0;

/// The aggregate at and above which the clinical risk is high.
const HIGH_RISK_MIN: u32 = 7;
/// The aggregate at and above which the clinical risk is (at least) medium.
const MEDIUM_RISK_MIN: u32 = 5;
/// A single parameter with this score is a "red score".
const RED_SCORE: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Consciousness {
    Alert,
    Confusion,
    Voice,
    Pain,
    Unresponsive,
}

#[derive(Debug)]
struct Vitals {
    patient_id: String,
    resp_rate: u32,
    spo2: u32,
    on_oxygen: bool,
    temp_c: f64,
    systolic_bp: u32,
    heart_rate: u32,
    consciousness: Consciousness,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Risk {
    Low,
    LowMedium,
    Medium,
    High,
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Risk::Low => "low",
            Risk::LowMedium => "low-medium",
            Risk::Medium => "medium",
            Risk::High => "high",
        })
    }
}

fn score_resp_rate(v: u32) -> u32 {
    match v {
        0..=8 => 3,
        9..=11 => 1,
        12..=20 => 0,
        21..=24 => 2,
        _ => 3,
    }
}

fn score_spo2_scale1(v: u32) -> u32 {
    match v {
        0..=91 => 3,
        92..=93 => 2,
        94..=95 => 1,
        _ => 0,
    }
}

fn score_oxygen(on_oxygen: bool) -> u32 {
    if on_oxygen {
        2
    } else {
        0
    }
}

fn score_systolic_bp(v: u32) -> u32 {
    match v {
        0..=90 => 3,
        91..=100 => 2,
        101..=110 => 1,
        111..=219 => 0,
        _ => 3,
    }
}

fn score_heart_rate(v: u32) -> u32 {
    match v {
        0..=40 => 3,
        41..=50 => 1,
        51..=90 => 0,
        91..=110 => 1,
        111..=130 => 2,
        _ => 3,
    }
}

fn score_consciousness(c: Consciousness) -> u32 {
    if c == Consciousness::Alert {
        0
    } else {
        3
    }
}

fn score_temp(t: f64) -> u32 {
    // The boundaries 35.0, 36.0, 38.0 and 39.0 are exactly representable, so
    // a reading of e.g. "36.0" compares equal to the literal and lands in the
    // band the chart gives it.
    if t <= 35.0 {
        3
    } else if t <= 36.0 {
        1
    } else if t <= 38.0 {
        0
    } else if t <= 39.0 {
        1
    } else {
        2
    }
}

/// The aggregate NEWS2 score and the clinical risk it indicates.
fn assess(v: &Vitals) -> (u32, Risk) {
    let parts = [
        score_resp_rate(v.resp_rate),
        score_spo2_scale1(v.spo2),
        score_oxygen(v.on_oxygen),
        score_temp(v.temp_c),
        score_systolic_bp(v.systolic_bp),
        score_heart_rate(v.heart_rate),
        score_consciousness(v.consciousness),
    ];
    let total: u32 = parts.iter().sum();
    let risk = if total >= HIGH_RISK_MIN {
        Risk::High
    } else if total >= MEDIUM_RISK_MIN {
        Risk::Medium
    } else if parts.iter().any(|&p| p == RED_SCORE) {
        Risk::LowMedium
    } else {
        Risk::Low
    };
    (total, risk)
}

fn parse_whole(name: &str, s: &str, max: u32) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{}: expected a whole number, got {:?}", name, s));
    }
    match s.parse::<u32>() {
        Ok(v) if v <= max => Ok(v),
        _ => Err(format!("{}: {} is outside 0..={}", name, s, max)),
    }
}

fn parse_oxygen(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "y" | "true" | "1" => Ok(true),
        "no" | "n" | "false" | "0" => Ok(false),
        _ => Err(format!("on_oxygen: expected yes or no, got {:?}", s)),
    }
}

fn parse_temp(s: &str) -> Result<f64, String> {
    // Only plain decimals: Rust's float parser would also take "inf", "NaN"
    // and exponents, none of which is a thermometer reading.
    let mut parts = s.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let frac = parts.next();
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !frac.map_or(true, digits) {
        return Err(format!("temp_c: expected a decimal number, got {:?}", s));
    }
    let t: f64 = s
        .parse()
        .map_err(|_| format!("temp_c: expected a decimal number, got {:?}", s))?;
    if !(MIN_TEMP_C..=MAX_TEMP_C).contains(&t) {
        return Err(format!(
            "temp_c: {} is outside {:.1}..={:.1}",
            s, MIN_TEMP_C, MAX_TEMP_C
        ));
    }
    Ok(t)
}

fn parse_consciousness(s: &str) -> Result<Consciousness, String> {
    match s.to_ascii_uppercase().as_str() {
        "A" => Ok(Consciousness::Alert),
        "C" => Ok(Consciousness::Confusion),
        "V" => Ok(Consciousness::Voice),
        "P" => Ok(Consciousness::Pain),
        "U" => Ok(Consciousness::Unresponsive),
        _ => Err(format!(
            "consciousness: expected one of A, C, V, P, U, got {:?}",
            s
        )),
    }
}

fn parse_row(line: &str) -> Result<Vitals, String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if fields.len() != COLUMNS {
        return Err(format!(
            "expected {} comma-separated fields, got {}",
            COLUMNS,
            fields.len()
        ));
    }
    let patient_id = fields[0];
    if patient_id.is_empty() || patient_id.contains('"') {
        return Err(format!(
            "patient_id: must be non-empty and unquoted, got {:?}",
            patient_id
        ));
    }
    Ok(Vitals {
        patient_id: patient_id.to_string(),
        resp_rate: parse_whole("resp_rate", fields[1], MAX_RESP_RATE)?,
        spo2: parse_whole("spo2", fields[2], MAX_SPO2)?,
        on_oxygen: parse_oxygen(fields[3])?,
        temp_c: parse_temp(fields[4])?,
        systolic_bp: parse_whole("systolic_bp", fields[5], MAX_SYSTOLIC_BP)?,
        heart_rate: parse_whole("heart_rate", fields[6], MAX_HEART_RATE)?,
        consciousness: parse_consciousness(fields[7])?,
    })
}

enum Failure {
    Malformed { line: usize, message: String },
    Io(String),
}

/// Scores every row; the whole input is checked before anything is written,
/// so a malformed file never yields a partial result that looks complete.
fn run(input: &mut dyn BufRead, source: &str) -> Result<Vec<(String, u32, Risk)>, Failure> {
    let mut results = Vec::new();
    let mut seen_header = false;
    for (index, line) in input.lines().enumerate() {
        let line_no = index + 1;
        let line = line.map_err(|e| Failure::Io(format!("{}: {}", source, e)))?;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if line.trim().is_empty() {
            continue;
        }
        if !seen_header {
            let header: Vec<&str> = line.split(',').map(str::trim).collect();
            if header.join(",") != HEADER {
                return Err(Failure::Malformed {
                    line: line_no,
                    message: format!("expected the header {:?}", HEADER),
                });
            }
            seen_header = true;
            continue;
        }
        let vitals = parse_row(line).map_err(|message| Failure::Malformed {
            line: line_no,
            message,
        })?;
        let (score, risk) = assess(&vitals);
        results.push((vitals.patient_id, score, risk));
    }
    if !seen_header {
        return Err(Failure::Malformed {
            line: 1,
            message: format!("empty input; expected the header {:?}", HEADER),
        });
    }
    Ok(results)
}

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    let (mut input, source): (Box<dyn BufRead>, String) = match args.as_slice() {
        [] => (Box::new(BufReader::new(io::stdin())), "<stdin>".to_string()),
        [path] => match File::open(path) {
            Ok(f) => (Box::new(BufReader::new(f)) as Box<dyn BufRead>, path.clone()),
            Err(e) => {
                eprintln!("news2: {}: {}", path, e);
                process::exit(EXIT_IO);
            }
        },
        _ => {
            eprintln!("usage: news2 [FILE]   (reads stdin when FILE is absent)");
            process::exit(EXIT_USAGE);
        }
    };

    let results = match run(&mut input, &source) {
        Ok(r) => r,
        Err(Failure::Malformed { line, message }) => {
            eprintln!("news2: {}: line {}: {}", source, line, message);
            process::exit(EXIT_MALFORMED);
        }
        Err(Failure::Io(message)) => {
            eprintln!("news2: {}", message);
            process::exit(EXIT_IO);
        }
    };

    let mut out = String::from("patient_id,score,risk\n");
    for (id, score, risk) in &results {
        out.push_str(&format!("{},{},{}\n", id, score, risk));
    }
    let stdout = io::stdout();
    let mut lock = stdout.lock();
    if let Err(e) = lock.write_all(out.as_bytes()).and_then(|_| lock.flush()) {
        eprintln!("news2: writing output: {}", e);
        process::exit(EXIT_IO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every band edge of chart 1, as (value, score) pairs on each side.
    #[test]
    fn band_edges() {
        let rr = [(8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3)];
        for (v, s) in rr {
            assert_eq!(score_resp_rate(v), s, "resp_rate {}", v);
        }
        let sp = [(91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)];
        for (v, s) in sp {
            assert_eq!(score_spo2_scale1(v), s, "spo2 {}", v);
        }
        let bp = [(90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3)];
        for (v, s) in bp {
            assert_eq!(score_systolic_bp(v), s, "systolic_bp {}", v);
        }
        let hr = [
            (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2),
            (130, 2), (131, 3),
        ];
        for (v, s) in hr {
            assert_eq!(score_heart_rate(v), s, "heart_rate {}", v);
        }
        let t = [
            ("35.0", 3), ("35.1", 1), ("36.0", 1), ("36.1", 0), ("38.0", 0), ("38.1", 1),
            ("39.0", 1), ("39.1", 2),
        ];
        for (v, s) in t {
            assert_eq!(score_temp(parse_temp(v).unwrap()), s, "temp {}", v);
        }
    }

    #[test]
    fn rejects_malformed() {
        let bad = [
            "P1,16,98,no,37.0,120,72",
            "P1,16,98,no,37.0,120,72,A,extra",
            ",16,98,no,37.0,120,72,A",
            "P1,-1,98,no,37.0,120,72,A",
            "P1,16,101,no,37.0,120,72,A",
            "P1,16,98,maybe,37.0,120,72,A",
            "P1,16,98,no,inf,120,72,A",
            "P1,16,98,no,3.7e1,120,72,A",
            "P1,16,98,no,37.,120,72,A",
            "P1,16,98,no,37.0,120,72,X",
        ];
        for row in bad {
            assert!(parse_row(row).is_err(), "accepted {:?}", row);
        }
    }
}
