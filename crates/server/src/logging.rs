//! Logs as etcd's flags ask for them: `--log-level`, `--logger` (`zap`:
//! one JSON object a line with zap's keys as etcd writes them, `level`,
//! `ts`, `caller`, `msg`, then the record's fields; `capnslog`:
//! human-readable lines) and `--log-outputs` (stderr, stdout, files).
//!
//! `RUST_LOG`, when set, replaces `--log-level` with its per-module
//! directives (for developers). Nothing here may panic or stop the member
//! on a failed write: a log line that cannot be written is lost, as with
//! any logger.

use crate::config::{bad, ConfigError, LogLevel, Logger};
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Synod's crates, whose records `--log-level=debug` shows; other crates
/// (HTTP/2, gRPC) stay at info, where their debug records would drown
/// Synod's.
const SYNOD_TARGETS: &[&str] = &["synod_server", "synod_runtime", "synod_paxos", "synod_storage", "synod_kv"];

/// One place logs go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// The standard error (`stderr`, or etcd's `default`).
    Stderr,
    /// The standard output.
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// The logging flags, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `--log-level`.
    pub level: LogLevel,
    /// `--logger`.
    pub logger: Logger,
    /// `--log-outputs`, without repeats.
    pub outputs: Vec<Output>,
}

impl LogConfig {
    /// Checks `--log-outputs` against `--logger` as etcd does: capnslog
    /// writes to exactly one of stderr, stdout or default; zap to any of
    /// those and files, but `default` alone. etcd's `journal` is not
    /// served (systemd's journal keeps a unit's stderr).
    pub fn new(level: LogLevel, logger: Logger, outputs: &str) -> Result<LogConfig, ConfigError> {
        let names: Vec<&str> = outputs.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if names.is_empty() {
            return Err(bad("--log-outputs names no output"));
        }
        if names.len() > 1 && names.contains(&"default") {
            return Err(bad(format!("--log-outputs {outputs:?}: \"default\" cannot be combined with other outputs")));
        }
        if logger == Logger::Capnslog && names.len() != 1 {
            return Err(bad(format!("--logger=capnslog supports only 1 value in --log-outputs, got {outputs:?}")));
        }
        let mut list = Vec::new();
        for name in names {
            let output = match name {
                "default" | "stderr" => Output::Stderr,
                "stdout" => Output::Stdout,
                "journal" => {
                    return Err(bad(
                        "--log-outputs journal is not served: write to stderr, which systemd's journal keeps",
                    ));
                }
                path if logger == Logger::Capnslog => {
                    return Err(bad(format!(
                        "--log-outputs {path:?}: --logger=capnslog writes only to stderr, stdout or default \
                         (use --logger=zap for files)"
                    )));
                }
                path => Output::File(PathBuf::from(path)),
            };
            if !list.contains(&output) {
                list.push(output);
            }
        }
        Ok(LogConfig { level, logger, outputs: list })
    }

    /// The filter: `RUST_LOG` if set, else the level.
    fn filter(&self) -> EnvFilter {
        if let Ok(filter) = EnvFilter::try_from_default_env() {
            return filter;
        }
        let level = match self.level {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error | LogLevel::Dpanic | LogLevel::Panic | LogLevel::Fatal => "error",
        };
        let directives = if self.level == LogLevel::Debug {
            std::iter::once("info".to_string()).chain(SYNOD_TARGETS.iter().map(|t| format!("{t}=debug"))).collect()
        } else {
            vec![level.to_string()]
        };
        EnvFilter::new(directives.join(","))
    }

    /// Installs the global subscriber. Fails if a file cannot be opened.
    pub fn init(&self) -> Result<(), ConfigError> {
        let writer = Outputs::open(&self.outputs)?;
        let ansi = match self.outputs.as_slice() {
            [Output::Stderr] => std::io::stderr().is_terminal(),
            [Output::Stdout] => std::io::stdout().is_terminal(),
            _ => false,
        };
        let builder = tracing_subscriber::fmt().with_env_filter(self.filter()).with_writer(writer).with_ansi(ansi);
        match self.logger {
            Logger::Zap => builder.event_format(ZapJson).init(),
            Logger::Capnslog => builder.init(),
        }
        Ok(())
    }
}

/// The opened outputs; every record goes to each, whole.
struct Outputs {
    targets: Vec<Target>,
}

enum Target {
    Stderr,
    Stdout,
    File(Mutex<File>),
}

impl Outputs {
    fn open(outputs: &[Output]) -> Result<Outputs, ConfigError> {
        let targets = outputs
            .iter()
            .map(|o| {
                Ok(match o {
                    Output::Stderr => Target::Stderr,
                    Output::Stdout => Target::Stdout,
                    Output::File(path) => Target::File(Mutex::new(
                        File::options()
                            .create(true)
                            .append(true)
                            .open(path)
                            .map_err(|e| bad(format!("--log-outputs: cannot open {}: {e}", path.display())))?,
                    )),
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Outputs { targets })
    }
}

/// Writes each buffer it is given to every output (the formatter hands
/// over one whole record at a time).
struct OutputsWriter<'a>(&'a Outputs);

impl Write for OutputsWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for target in &self.0.targets {
            // A failed write loses this line on that output only.
            let _ = match target {
                Target::Stderr => std::io::stderr().lock().write_all(buf),
                Target::Stdout => std::io::stdout().lock().write_all(buf),
                Target::File(f) => match f.lock() {
                    Ok(mut f) => f.write_all(buf),
                    Err(poisoned) => poisoned.into_inner().write_all(buf),
                },
            };
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Outputs {
    type Writer = OutputsWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        OutputsWriter(self)
    }
}

/// zap's JSON as etcd configures it: `{"level":"info","ts":"...",
/// "caller":"file:line","msg":"...", fields...}`, keys in that order.
struct ZapJson;

impl<S, N> FormatEvent<S, N> for ZapJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let meta = event.metadata();
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        write!(writer, "{{\"level\":\"{}\",\"ts\":\"", meta.level().as_str().to_ascii_lowercase())?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\"")?;
        if let (Some(file), Some(line)) = (meta.file(), meta.line()) {
            write!(writer, ",\"caller\":{}", json_string(&format!("{file}:{line}")))?;
        }
        write!(writer, ",\"msg\":{}", json_string(&fields.message))?;
        for (key, value) in &fields.rest {
            write!(writer, ",{}:{value}", json_string(key))?;
        }
        writeln!(writer, "}}")
    }
}

/// A string as JSON.
fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A record's fields: the message, and the others as JSON values in
/// order (a field named like one of zap's keys is prefixed with `field.`).
#[derive(Default)]
struct JsonFields {
    message: String,
    rest: Vec<(String, serde_json::Value)>,
}

impl JsonFields {
    fn add(&mut self, field: &Field, value: serde_json::Value) {
        let name = field.name();
        if name == "message" {
            self.message = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            return;
        }
        let key = match name {
            "level" | "ts" | "caller" | "msg" => format!("field.{name}"),
            // The `log` crate's records, bridged, carry their origin as
            // fields; zap's caller already says where.
            n if n.starts_with("log.") => return,
            n => n.to_string(),
        };
        self.rest.push((key, value));
    }
}

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.add(field, format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.add(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.add(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.add(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.add(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.add(field, value.to_string().into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_outputs_follow_etcds_rules() {
        let ok = |logger, outputs: &str| LogConfig::new(LogLevel::Info, logger, outputs).map(|c| c.outputs);
        assert_eq!(ok(Logger::Capnslog, "default").unwrap(), [Output::Stderr]);
        assert_eq!(ok(Logger::Capnslog, "stdout").unwrap(), [Output::Stdout]);
        assert_eq!(
            ok(Logger::Zap, "stderr,/var/log/synod.log,stderr").unwrap(),
            [Output::Stderr, Output::File("/var/log/synod.log".into())]
        );
        for (logger, outputs, want) in [
            (Logger::Capnslog, "stderr,stdout", "only 1 value"),
            (Logger::Capnslog, "/tmp/x.log", "--logger=zap for files"),
            (Logger::Zap, "default,stdout", "cannot be combined"),
            (Logger::Zap, "journal", "not served"),
            (Logger::Zap, "", "names no output"),
        ] {
            let err = ok(logger, outputs).unwrap_err().to_string();
            assert!(err.contains(want), "{outputs}: {err}");
        }
    }

    #[test]
    fn zap_lines_carry_etcds_keys_in_zaps_order() {
        let path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        let outputs = Outputs::open(&[Output::File(path.to_path_buf())]).unwrap();
        let subscriber = tracing_subscriber::fmt().with_writer(outputs).with_ansi(false).event_format(ZapJson).finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(member = 7u64, name = "a\"b", level = "x", "member {} started", 7);
        });
        let line = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["level"], "warn");
        assert_eq!(v["msg"], "member 7 started");
        assert_eq!(v["member"], 7);
        assert_eq!(v["name"], "a\"b");
        assert_eq!(v["field.level"], "x");
        assert!(v["caller"].as_str().unwrap().contains("logging.rs:"), "{line}");
        let ts = v["ts"].as_str().unwrap();
        assert!(ts.len() >= 20 && ts.as_bytes()[10] == b'T' && ts.ends_with('Z'), "{ts}");
        let at = |key: &str| line.find(&format!("\"{key}\":")).unwrap_or(usize::MAX);
        assert!(at("level") < at("ts") && at("ts") < at("caller") && at("caller") < at("msg"), "{line}");
        assert!(at("msg") < at("member"), "{line}");
    }
}
