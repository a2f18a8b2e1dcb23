//! `cdc-orchestrator replay`: feeds a JSON-lines trace of inputs to the policy and prints its actions.
//!
//! Each trace line is one input at a time `t_ms` (milliseconds since the trace's zero), e.g.
//! `{"t_ms":0,"input":"activity","table":"faculty","records":3}`. Between two lines the policy's deadlines
//! are fired at their due time, as the sidecar's timer would, so idle stops, cooldown ends, retries and
//! throttled starts appear at the time they would happen. Nothing is fired after the last line: end a trace
//! with a `tick` to look further ahead.
//!
//! Every action is printed as one JSON line, `{"t_ms":..,"action":"start"|"stop","table":..,"reason":..}`
//! (with `events`, the policy's events too). A bad line is reported on the error stream with its line
//! number and skipped; the caller learns how many there were.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

use super::{EXIT_CONFIG, EXIT_FAILURE, load_config};
use crate::model::{JobId, JobState, Millis, Op, job_id_for};
use crate::policy::{
    Action, Activity, ControlCommand, Event, Input, JobObservation, Operations, Policy, PolicySettings,
};

/// What to print.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayOptions {
    /// Print the policy's events (deferred, throttled, failing, ...) as well as its actions.
    pub events: bool,
}

/// How a replay went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Trace lines read (blank and comment lines included).
    pub lines: usize,
    /// Start and stop actions printed.
    pub actions: usize,
    /// Lines that were not valid inputs and were skipped.
    pub bad_lines: usize,
}

/// A replay that could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The trace could not be read.
    #[error("cannot read the trace")]
    Read(#[source] io::Error),
    /// The output could not be written.
    #[error("cannot write the output")]
    Write(#[source] io::Error),
}

/// One trace line without its time.
#[derive(Debug, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case", deny_unknown_fields)]
enum TraceInput {
    Activity {
        table: String,
        records: u64,
        #[serde(default)]
        ops: BTreeMap<Op, u64>,
        #[serde(default)]
        newest_ts_ms: Option<i64>,
    },
    Lag {
        table: String,
        lag: u64,
    },
    Job {
        table: String,
        #[serde(deserialize_with = "known_state")]
        state: JobState,
        #[serde(default)]
        job_id: Option<JobId>,
        #[serde(default)]
        generation: Option<u64>,
    },
    StartFailed {
        table: String,
        #[serde(default)]
        generation: Option<u64>,
        #[serde(default)]
        error: Option<String>,
    },
    Stopped {
        table: String,
        #[serde(default)]
        job_id: Option<JobId>,
    },
    Pause(Table),
    Resume(Table),
    Trigger(Table),
    Stop(Table),
    Tick,
}

/// A job state of a trace: one Flink has, so that a misspelt state is a bad line rather than a state this version
/// does not know.
fn known_state<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<JobState, D::Error> {
    let name = String::deserialize(deserializer)?;
    // Parsing keeps only a safe spelling of an unknown state; the error names the trace's own text.
    match JobState::from(name.clone()) {
        JobState::Other(_) => Err(serde::de::Error::unknown_variant(&name, &JobState::KNOWN)),
        state => Ok(state),
    }
}

/// The one field of an operator's input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    table: String,
}

#[derive(Serialize)]
struct ActionLine<'a> {
    t_ms: u64,
    action: &'static str,
    table: &'a str,
    reason: &'static str,
}

#[derive(Serialize)]
struct EventLine<'a> {
    t_ms: u64,
    #[serde(flatten)]
    event: &'a Event,
}

/// Parses one trace line into its time and the pieces of its input (job ids are filled in later).
fn parse(line: &str) -> Result<(u64, TraceInput), String> {
    let mut value: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| "expected a JSON object".to_owned())?;
    let t_ms = match object.remove("t_ms") {
        Some(t) => match t.as_u64() {
            Some(ms) if ms <= Millis::MAX.0 => ms,
            Some(_) => {
                return Err(format!(
                    "t_ms: {t} is beyond the supported range (at most {})",
                    Millis::MAX.0
                ));
            }
            None => {
                return Err(format!(
                    "t_ms: expected milliseconds as a non-negative integer (got {t})"
                ));
            }
        },
        None => return Err("missing t_ms".to_owned()),
    };
    if !object.contains_key("input") {
        return Err("missing input".to_owned());
    }
    let input = TraceInput::deserialize(value).map_err(|e| e.to_string())?;
    Ok((t_ms, input))
}

/// Turns a parsed line into a policy input. A `job` line without `job_id` names the table's latest job, with
/// the id pinned from the table and its generation, as the replay's stand-in for the id the launcher would pin.
fn to_input(policy: &Policy, input: TraceInput) -> Input {
    match input {
        TraceInput::Activity {
            table,
            records,
            ops,
            newest_ts_ms,
        } => Input::Activity(Activity {
            table,
            records,
            // A line without operations has no decoded sample, as an advance the watcher counted from watermarks.
            ops: if ops.is_empty() {
                Operations::Unknown
            } else {
                Operations::Sampled(ops)
            },
            newest_ts_ms,
        }),
        TraceInput::Lag { table, lag } => Input::Lag { table, lag },
        TraceInput::Job {
            table,
            state,
            job_id,
            generation,
        } => {
            // Without an id, the line is about the table's latest job: the one its latest start pinned.
            let (job_id, generation) = match job_id {
                Some(id) => (id, generation),
                None => {
                    let latest = generation.or_else(|| policy.status(&table).map(|s| s.generation));
                    (job_id_for(&table, latest.unwrap_or(0)), latest)
                }
            };
            Input::JobState(JobObservation {
                table,
                job_id,
                generation,
                state,
            })
        }
        TraceInput::StartFailed {
            table,
            generation,
            error,
        } => Input::StartFailed {
            table,
            generation,
            error: error.unwrap_or_else(|| "start failed (trace)".to_owned()),
        },
        TraceInput::Stopped { table, job_id } => Input::Stopped { table, job_id },
        TraceInput::Pause(Table { table }) => operator(table, ControlCommand::Pause),
        TraceInput::Resume(Table { table }) => operator(table, ControlCommand::Resume),
        TraceInput::Trigger(Table { table }) => operator(table, ControlCommand::Trigger),
        TraceInput::Stop(Table { table }) => operator(table, ControlCommand::Stop),
        TraceInput::Tick => Input::Tick,
    }
}

fn operator(table: String, command: ControlCommand) -> Input {
    Input::Operator { table, command }
}

struct Printer<W> {
    out: W,
    options: ReplayOptions,
    actions: usize,
}

impl<W: Write> Printer<W> {
    fn print(&mut self, at: Millis, actions: &[Action]) -> Result<(), ReplayError> {
        for action in actions {
            let (action, table, reason) = match action {
                Action::Start { table, reason, .. } => ("start", table, reason.as_str()),
                Action::Stop { table, reason, .. } => ("stop", table, reason.as_str()),
                Action::Event(event) if self.options.events => {
                    self.write(&EventLine { t_ms: at.0, event })?;
                    continue;
                }
                _ => continue,
            };
            self.actions += 1;
            self.write(&ActionLine {
                t_ms: at.0,
                action,
                table,
                reason,
            })?;
        }
        Ok(())
    }

    /// Writes `line` as one line of JSON.
    fn write(&mut self, line: &impl Serialize) -> Result<(), ReplayError> {
        let line = serde_json::to_string(line).map_err(|e| ReplayError::Write(io::Error::other(e)))?;
        writeln!(self.out, "{line}").map_err(ReplayError::Write)
    }
}

/// Replays `trace` (`-` or `None`: standard input) through the policy configured in `file`: exit 2 when the
/// trace cannot be opened, 1 when a line was bad (reported and skipped) or reading or writing failed.
pub fn command(file: Option<&Path>, trace: Option<&Path>, seed: u64, options: ReplayOptions) -> ExitCode {
    let config = match load_config(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let settings = PolicySettings::from_config(&config, seed);
    let stdout = BufWriter::new(io::stdout().lock());
    let stderr = io::stderr().lock();
    let result = match trace.filter(|path| path.as_os_str() != "-") {
        Some(path) => match File::open(path) {
            Ok(file) => replay(settings, BufReader::new(file), stdout, stderr, options),
            Err(e) => {
                eprintln!("error: cannot open trace {}: {e}", path.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => replay(settings, io::stdin().lock(), stdout, stderr, options),
    };
    match result {
        Ok(summary) if summary.bad_lines == 0 => ExitCode::SUCCESS,
        Ok(summary) => {
            eprintln!(
                "error: {} of {} trace lines were bad and skipped",
                summary.bad_lines, summary.lines
            );
            ExitCode::from(EXIT_FAILURE)
        }
        Err(e) => {
            eprintln!("error: {}", crate::logging::chain(&e));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Calls the policy at every deadline up to and including `until`.
fn fire_deadlines<W: Write>(policy: &mut Policy, until: Millis, printer: &mut Printer<W>) -> Result<(), ReplayError> {
    while let Some(due) = policy.next_deadline().filter(|due| *due <= until) {
        let actions = policy.handle(due, Input::Tick);
        printer.print(due, &actions)?;
        if policy.next_deadline() == Some(due) {
            // A deadline that does not move after firing would loop forever; the policy guarantees it moves,
            // and this guard keeps a bug there from hanging a replay.
            break;
        }
    }
    Ok(())
}

/// Replays `trace` against a fresh policy, writing actions to `out` and bad-line reports to `errors`.
pub fn replay(
    settings: PolicySettings,
    trace: impl BufRead,
    out: impl Write,
    mut errors: impl Write,
    options: ReplayOptions,
) -> Result<ReplaySummary, ReplayError> {
    let mut policy = Policy::new(settings);
    let mut printer = Printer {
        out,
        options,
        actions: 0,
    };
    let mut summary = ReplaySummary::default();
    let mut last_t: Option<u64> = None;
    for (index, line) in trace.lines().enumerate() {
        let line = line.map_err(ReplayError::Read)?;
        summary.lines += 1;
        let number = index + 1;
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let parsed = parse(text).and_then(|(t_ms, input)| match last_t {
            Some(previous) if t_ms < previous => Err(format!(
                "t_ms {t_ms} goes back in time (an earlier line has {previous})"
            )),
            _ => Ok((t_ms, input)),
        });
        let (t_ms, input) = match parsed {
            Ok(parsed) => parsed,
            Err(reason) => {
                summary.bad_lines += 1;
                writeln!(errors, "error: trace line {number}: {reason}").map_err(ReplayError::Write)?;
                continue;
            }
        };
        last_t = Some(t_ms);
        let now = Millis(t_ms);
        fire_deadlines(&mut policy, now, &mut printer)?;
        let input = to_input(&policy, input);
        let actions = policy.handle(now, input);
        printer.print(now, &actions)?;
    }
    printer.out.flush().map_err(ReplayError::Write)?;
    summary.actions = printer.actions;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FlinkConfig, PolicyConfig};

    fn run(trace: &str, options: ReplayOptions) -> (String, String, ReplaySummary) {
        let settings = PolicySettings::new(PolicyConfig::default(), &FlinkConfig::default(), 0);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let summary = replay(settings, trace.as_bytes(), &mut out, &mut err, options).unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
            summary,
        )
    }

    #[test]
    fn deadlines_fire_between_lines_at_their_due_time() {
        let trace = r#"{"t_ms":0,"input":"activity","table":"faculty","records":3}
{"t_ms":1000,"input":"job","table":"faculty","state":"RUNNING"}
{"t_ms":90000,"input":"tick"}
"#;
        let (out, err, summary) = run(trace, ReplayOptions::default());
        assert_eq!(err, "");
        assert_eq!(
            out,
            "{\"t_ms\":0,\"action\":\"start\",\"table\":\"faculty\",\"reason\":\"changes\"}\n\
             {\"t_ms\":61000,\"action\":\"stop\",\"table\":\"faculty\",\"reason\":\"idle\"}\n"
        );
        assert_eq!(summary.actions, 2);
    }

    #[test]
    fn nothing_fires_after_the_last_line() {
        let trace = "{\"t_ms\":0,\"input\":\"activity\",\"table\":\"faculty\",\"records\":3}\n\
                     {\"t_ms\":1000,\"input\":\"job\",\"table\":\"faculty\",\"state\":\"RUNNING\"}\n";
        let (out, _, _) = run(trace, ReplayOptions::default());
        assert_eq!(out.lines().count(), 1);
    }

    #[test]
    fn bad_lines_are_reported_with_their_number_and_skipped() {
        let trace = "# a comment\n\
                     {\"t_ms\":5,\"input\":\"activity\",\"table\":\"faculty\",\"records\":1}\n\
                     not json\n\
                     {\"t_ms\":6,\"input\":\"explode\",\"table\":\"faculty\"}\n\
                     {\"t_ms\":1,\"input\":\"tick\"}\n\
                     {\"t_ms\":7,\"input\":\"job\",\"table\":\"faculty\",\"state\":\"RUNNIN\"}\n\
                     {\"t_ms\":8,\"input\":\"lag\",\"table\":\"faculty\",\"lag\":1,\"extra\":true}\n\
                     {\"input\":\"tick\"}\n\
                     {\"t_ms\":-3,\"input\":\"tick\"}\n\
                     {\"t_ms\":18446744073709551615,\"input\":\"tick\"}\n\
                     \n\
                     {\"t_ms\":9,\"input\":\"activity\",\"table\":\"program\",\"records\":1}\n";
        let (out, err, summary) = run(trace, ReplayOptions::default());
        assert_eq!(summary.bad_lines, 8, "{err}");
        assert_eq!(summary.lines, 12);
        let expected = [
            "error: trace line 3: not JSON",
            "error: trace line 4: unknown variant `explode`",
            "error: trace line 5: t_ms 1 goes back in time",
            "error: trace line 6: unknown variant `RUNNIN`",
            "error: trace line 7: unknown field `extra`",
            "error: trace line 8: missing t_ms",
            "error: trace line 9: t_ms: expected milliseconds",
        ];
        let lines: Vec<&str> = err.lines().collect();
        assert!(lines.len() >= expected.len(), "{err}");
        for (line, start) in lines.iter().zip(expected) {
            assert!(line.starts_with(start), "{start:?}: {err}");
        }
        // The good lines still ran: both tables started.
        assert_eq!(out.lines().count(), 2, "{out}");
    }

    #[test]
    fn ops_decide_what_counts_and_events_are_printed_on_request() {
        let trace = r#"{"t_ms":0,"input":"trigger","table":"faculty"}
{"t_ms":10,"input":"job","table":"faculty","state":"RUNNING","job_id":"0123456789abcdef0123456789abcdef","generation":1}
{"t_ms":20,"input":"stop","table":"faculty"}
{"t_ms":30,"input":"stopped","table":"faculty","job_id":"0123456789abcdef0123456789abcdef"}
{"t_ms":40,"input":"activity","table":"faculty","records":2,"ops":{"c":1,"d":1},"newest_ts_ms":1700000000000}
{"t_ms":30000,"input":"tick"}
"#;
        let (out, err, _) = run(trace, ReplayOptions { events: true });
        assert_eq!(err, "");
        let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let summary: Vec<String> = lines
            .iter()
            .map(|l| {
                let kind = l.get("action").or_else(|| l.get("event")).unwrap();
                format!("{}:{}", l["t_ms"], kind.as_str().unwrap())
            })
            .collect();
        assert_eq!(summary, ["0:start", "20:stop", "40:deferred", "30000:start"]);
        assert_eq!(lines[2]["until"], 30000);
        assert_eq!(lines[2]["cause"], "cooldown");
        assert_eq!(lines[1]["reason"], "operator");
    }
}
