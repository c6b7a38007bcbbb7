//! Where a member's flags come from, as etcd reads them: the command line,
//! `ETCD_<FLAG>` environment variables, or a YAML config file
//! (`--config-file`, or `ETCD_CONFIG_FILE`).
//!
//! etcd's rules, kept: a variable is the flag's name in upper case with
//! dashes as underscores (`--initial-cluster` is `ETCD_INITIAL_CLUSTER`);
//! an empty variable is as if unset; a variable for a flag also given on
//! the command line is refused (etcd: "conflicting environment variable is
//! shadowed by corresponding command-line flag"); with a config file, the
//! file is the whole configuration. Where etcd warns or ignores, Synod
//! refuses, naming what it refuses, so that nothing an operator set is
//! dropped unnoticed (`ETCD_CLIENT_CERT_AUTH=true` once started a
//! plaintext server): an `ETCD_*` variable that names no flag Synod serves,
//! a config file key it does not serve, and any other flag or `ETCD_*`
//! variable beside a config file (etcd ignores those). `ETCDCTL_*`
//! variables are etcdctl's and are left alone.
//!
//! Every value, wherever it comes from, goes through the same clap parser
//! as the command line, so a flag added to [`NodeArgs`] is at once an
//! `ETCD_*` variable and a config file key, with the same checks.

use super::{bad, file, unserved, Cli, ConfigError, NodeArgs};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use std::ffi::OsString;
use std::path::PathBuf;

/// The prefix of etcd's environment variables.
pub const ENV_PREFIX: &str = "ETCD_";

/// The config file flag; it is read before the others decide anything.
const CONFIG_FILE: &str = "config-file";

/// Why the command line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// clap's own answer: `--help`, `--version` or a malformed command
    /// line, printed by [`clap::Error::exit`].
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// A flag, variable, file or key refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Where one flag's value came from, when not from the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// An `ETCD_*` variable.
    Env(String),
    /// A key of the config file.
    File(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Env(var) => write!(f, "set by {var}"),
            Origin::File(key) => write!(f, "set by config file key {key}"),
        }
    }
}

/// Flags from variables or a file: as `--flag=value` arguments, and where
/// each came from.
#[derive(Default)]
struct Settings {
    argv: Vec<OsString>,
    origins: Vec<(String, Origin)>,
}

impl Settings {
    fn add(&mut self, flag: String, value: &str, origin: Origin) {
        self.argv.push(format!("--{flag}={value}").into());
        self.origins.push((flag, origin));
    }
}

/// The environment variable etcd reads `--{flag}` from.
pub fn env_name(flag: &str) -> String {
    format!("{ENV_PREFIX}{}", flag.to_uppercase().replace('-', "_"))
}

/// The flags a member takes from `ETCD_*` variables and config file keys:
/// every flag of [`NodeArgs`] but `--config-file`, by long name.
pub fn member_flags() -> Vec<String> {
    Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|long| *long != CONFIG_FILE)
        .map(str::to_string)
        .collect()
}

/// clap's id of the flag `--{long}`.
fn id_of(long: &str) -> Option<String> {
    Cli::command().get_arguments().find(|a| a.get_long() == Some(long)).map(|a| a.get_id().to_string())
}

/// Reads the command line `args` (the program's name first) and the
/// environment `env` into the member's flags or a subcommand.
pub fn load(
    args: impl IntoIterator<Item = OsString>,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Cli, LoadError> {
    let args: Vec<OsString> = args.into_iter().collect();
    let matches = Cli::command().try_get_matches_from(&args).map_err(explain)?;
    let vars = etcd_vars(env)?;
    if let Some((sub, _)) = matches.subcommand() {
        if let Some((var, _)) = vars.first() {
            return Err(bad(format!(
                "{var} is set, but `synod {sub}` takes no {ENV_PREFIX}* variables (they configure one member): \
                 unset it"
            ))
            .into());
        }
        return Ok(Cli::from_arg_matches(&matches)?);
    }
    let on_command_line =
        |long: &str| id_of(long).is_some_and(|id| matches.value_source(&id) == Some(ValueSource::CommandLine));
    let config_var = env_name(CONFIG_FILE);
    let file_from_env = vars.iter().find(|(var, _)| *var == config_var);
    let config_file = match matches.get_one::<PathBuf>("config_file") {
        Some(path) => Some(path.clone()),
        None => file_from_env.map(|(_, value)| PathBuf::from(value)),
    };
    let (program, rest) = args.split_first().map_or((OsString::from("synod"), &[][..]), |(p, r)| (p.clone(), r));
    let settings = match &config_file {
        Some(path) => {
            let given = if on_command_line(CONFIG_FILE) { "--config-file".to_string() } else { config_var.clone() };
            let mut others: Vec<String> =
                member_flags().into_iter().filter(|f| on_command_line(f)).map(|f| format!("--{f}")).collect();
            others.extend(
                vars.iter().filter(|(var, _)| !(*var == config_var && given == config_var)).map(|(v, _)| v.clone()),
            );
            if !others.is_empty() {
                return Err(bad(format!(
                    "{given} {} is given, so the file is the whole configuration (etcd ignores other flags and \
                     {ENV_PREFIX}* variables then; Synod refuses them): {} {} also set; move {} into the file",
                    path.display(),
                    others.join(", "),
                    if others.len() == 1 { "is" } else { "are" },
                    if others.len() == 1 { "it" } else { "them" },
                ))
                .into());
            }
            from_file(path)?
        }
        None => from_env(&vars, &on_command_line)?,
    };
    let mut argv = settings.argv;
    argv.insert(0, program);
    argv.extend(rest.iter().cloned());
    if let (Some(path), false) = (&config_file, on_command_line(CONFIG_FILE)) {
        argv.push(format!("--{CONFIG_FILE}={}", path.display()).into());
    }
    let matches = Cli::command().try_get_matches_from(&argv)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    cli.node.origins = settings.origins;
    Ok(cli)
}

/// Every `ETCD_*` variable of `env` that is not empty, by name
/// (`ETCDCTL_*` are etcdctl's: their prefix is not `ETCD_`).
fn etcd_vars(env: impl IntoIterator<Item = (OsString, OsString)>) -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in env {
        let name = name.to_string_lossy().into_owned();
        if !name.starts_with(ENV_PREFIX) {
            continue;
        }
        let value = value.into_string().map_err(|_| bad(format!("{name} is not valid UTF-8")))?;
        // As etcd: an empty variable is as if unset.
        if !value.is_empty() {
            vars.push((name, value));
        }
    }
    vars.sort();
    Ok(vars)
}

/// The flags `ETCD_*` variables set, as `--flag=value` arguments.
fn from_env(vars: &[(String, String)], on_command_line: &dyn Fn(&str) -> bool) -> Result<Settings, ConfigError> {
    let flags = member_flags();
    let mut settings = Settings::default();
    for (var, value) in vars {
        let flag = var[ENV_PREFIX.len()..].to_lowercase().replace('_', "-");
        if !flags.contains(&flag) || *var != env_name(&flag) {
            return Err(match unserved::why(&flag) {
                Some(why) => bad(format!("{var} sets etcd's --{flag}, which Synod does not serve: {why}; unset it")),
                None => bad(format!(
                    "unrecognized environment variable {var}: it names no flag Synod serves (see synod --help); \
                     unset it"
                )),
            });
        }
        if on_command_line(&flag) {
            return Err(bad(format!(
                "conflicting environment variable {var} is shadowed by corresponding command-line flag --{flag} \
                 (either unset environment variable or disable flag)"
            )));
        }
        check(&flag, value).map_err(|e| bad(format!("{var}={value:?}: {e}")))?;
        settings.add(flag, value, Origin::Env(var.clone()));
    }
    Ok(settings)
}

/// The flags a config file sets, as `--flag=value` arguments.
fn from_file(path: &PathBuf) -> Result<Settings, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read config file {}: {e}", path.display())))?;
    let in_file = |e: String| bad(format!("config file {}: {e}", path.display()));
    let values = file::flag_values(&text, &member_flags()).map_err(|e| in_file(e.0))?;
    let mut settings = Settings::default();
    for v in values {
        check(&v.flag, &v.value).map_err(|e| in_file(format!("key {}: {e}", v.key)))?;
        settings.add(v.flag, &v.value, Origin::File(v.key));
    }
    Ok(settings)
}

/// Whether `--{flag}={value}` parses on its own: an error here can name
/// the variable or key the value came from.
fn check(flag: &str, value: &str) -> Result<(), String> {
    match Cli::command().try_get_matches_from(["synod".to_string(), format!("--{flag}={value}")]) {
        Ok(_) => Ok(()),
        Err(e) => Err(first_line(&e)),
    }
}

/// clap's message without its `error: ` and usage lines.
fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// clap's error, or for an etcd flag Synod does not serve, why not.
fn explain(e: clap::Error) -> LoadError {
    if e.kind() == clap::error::ErrorKind::UnknownArgument {
        if let Some(clap::error::ContextValue::String(arg)) = e.get(clap::error::ContextKind::InvalidArg) {
            let flag = arg.trim_start_matches('-').split('=').next().unwrap_or_default();
            if let Some(why) = unserved::why(flag) {
                return bad(format!("--{flag} is etcd's flag, which Synod does not serve: {why}")).into();
            }
        }
    }
    LoadError::Clap(e)
}

impl NodeArgs {
    /// `error` with, after each flag it names, where that flag's value came
    /// from (an `ETCD_*` variable or a config file key), so the operator
    /// finds what to change.
    pub fn explain(&self, error: ConfigError) -> ConfigError {
        let mut text = error.0;
        let mut notes = Vec::new();
        for (flag, origin) in &self.origins {
            let named = format!("--{flag}");
            let whole_word = text
                .match_indices(&named)
                .any(|(at, _)| !text[at + named.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-'));
            if whole_word {
                notes.push(format!("{named} {origin}"));
            }
        }
        if !notes.is_empty() {
            text = format!("{text} ({})", notes.join("; "));
        }
        ConfigError(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{file::NANOSECOND_FLAGS, ClusterState, CompactionMode, LogLevel, Logger};
    use std::time::Duration;

    /// `load` of a command line (after the program's name) and variables.
    fn load_with(args: &[&str], env: &[(&str, &str)]) -> Result<Cli, LoadError> {
        let args = std::iter::once("synod").chain(args.iter().copied()).map(OsString::from);
        load(args, env.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))))
    }

    /// The member flags `load` makes, without where they came from.
    fn node(args: &[&str], env: &[(&str, &str)]) -> Result<NodeArgs, String> {
        load_with(args, env).map(|cli| NodeArgs { origins: Vec::new(), ..cli.node }).map_err(|e| e.to_string())
    }

    fn refusal(args: &[&str], env: &[(&str, &str)]) -> String {
        match load_with(args, env) {
            Ok(cli) => panic!("{args:?} {env:?} accepted: {:?}", cli.node),
            Err(e) => e.to_string(),
        }
    }

    /// A value of `--{flag}` that parses and differs from its default.
    fn sample(flag: &str) -> &'static str {
        const CANDIDATES: &[&str] = &["7", "true", "false", "3s", "existing", "revision", "debug", "zap"];
        let default = format!("{:?}", node(&[], &[]).unwrap());
        CANDIDATES
            .iter()
            .find(|v| node(&[&format!("--{flag}={v}")], &[]).is_ok_and(|n| format!("{n:?}") != default))
            .unwrap_or_else(|| panic!("no sample value for --{flag}: add one to CANDIDATES"))
    }

    #[test]
    fn every_flag_is_read_from_its_etcd_variable() {
        let flags = member_flags();
        assert!(flags.len() > 50 && flags.contains(&"initial-cluster".to_string()), "{flags:?}");
        for flag in &flags {
            let value = sample(flag);
            let var = env_name(flag);
            let from_env = load_with(&[], &[(&var, value)]).unwrap_or_else(|e| panic!("{var}={value}: {e}"));
            assert_eq!(from_env.node.origins, [(flag.clone(), Origin::Env(var.clone()))]);
            let from_flag = node(&[&format!("--{flag}={value}")], &[]).unwrap();
            assert_eq!(
                format!("{:?}", NodeArgs { origins: Vec::new(), ..from_env.node }),
                format!("{from_flag:?}"),
                "{var}={value} should set what --{flag}={value} sets"
            );
        }
    }

    #[test]
    fn a_variable_for_a_flag_also_on_the_command_line_is_refused_naming_both() {
        for flag in member_flags() {
            let value = sample(&flag);
            let var = env_name(&flag);
            let err = refusal(&[&format!("--{flag}={value}")], &[(&var, value)]);
            assert!(err.contains(&format!("{var} is shadowed")) && err.contains(&format!("--{flag}")), "{err}");
        }
    }

    #[test]
    fn etcds_names_and_values_are_read_as_etcd_reads_them() {
        assert_eq!(env_name("initial-cluster"), "ETCD_INITIAL_CLUSTER");
        assert_eq!(env_name("client-cert-auth"), "ETCD_CLIENT_CERT_AUTH");
        let n = node(&[], &[("ETCD_CLIENT_CERT_AUTH", "true"), ("ETCD_PEER_AUTO_TLS", "1")]).unwrap();
        assert!(n.client_cert_auth && n.peer_auto_tls);
        for (value, want) in [("T", true), ("True", true), ("0", false), ("F", false), ("FALSE", false)] {
            assert_eq!(node(&[], &[("ETCD_AUTO_TLS", value)]).unwrap().auto_tls, want, "{value}");
        }
        assert!(node(&["--auto-tls"], &[]).unwrap().auto_tls, "a bare boolean flag is true");
        let n = node(&[], &[("ETCD_INITIAL_CLUSTER_STATE", "existing"), ("ETCD_GRPC_KEEPALIVE_INTERVAL", "1h30m")])
            .unwrap();
        assert_eq!(n.initial_cluster_state, ClusterState::Existing);
        assert_eq!(n.grpc_keepalive_interval, Duration::from_secs(5400));
        // An empty variable is as if unset, and etcdctl's are not ours.
        let n = node(&[], &[("ETCD_NAME", ""), ("ETCD_NO_SUCH_FLAG", ""), ("ETCDCTL_API", "3")]).unwrap();
        assert_eq!(n.name, "default");
    }

    #[test]
    fn a_variable_that_names_no_flag_synod_serves_is_refused_with_its_name() {
        let table: &[(&str, &str)] = &[
            ("ETCD_NO_SUCH_FLAG", "unrecognized environment variable ETCD_NO_SUCH_FLAG"),
            ("ETCD_BIN", "unrecognized environment variable ETCD_BIN"),
            ("ETCD_WAL_DIR", "ETCD_WAL_DIR sets etcd's --wal-dir, which Synod does not serve: Synod keeps"),
            ("ETCD_ENABLE_V2", "ETCD_ENABLE_V2 sets etcd's --enable-v2"),
            ("ETCD_name", "unrecognized environment variable ETCD_name"),
            ("ETCD_HELP", "unrecognized environment variable ETCD_HELP"),
        ];
        for &(var, want) in table {
            let err = refusal(&[], &[(var, "x")]);
            assert!(err.contains(want), "{var}: {err}");
        }
        let err = refusal(&[], &[("ETCD_HEARTBEAT_INTERVAL", "abc")]);
        assert!(err.starts_with("ETCD_HEARTBEAT_INTERVAL=\"abc\": invalid value 'abc'"), "{err}");
        let err = refusal(&[], &[("ETCD_CLIENT_CERT_AUTH", "yes")]);
        assert!(err.contains("ETCD_CLIENT_CERT_AUTH=\"yes\"") && err.contains("invalid syntax"), "{err}");
    }

    #[test]
    fn an_etcd_flag_synod_does_not_serve_is_refused_with_the_reason() {
        for arg in ["--wal-dir=/x", "--enable-pprof", "--discovery"] {
            let err = refusal(&[arg], &[]);
            assert!(err.contains("is etcd's flag, which Synod does not serve"), "{arg}: {err}");
        }
        assert!(matches!(load_with(&["--no-such-flag"], &[]), Err(LoadError::Clap(_))));
    }

    #[test]
    fn subcommands_take_no_etcd_variables() {
        let err = refusal(&["demo"], &[("ETCD_NAME", "a")]);
        assert!(err.contains("ETCD_NAME is set, but `synod demo` takes no ETCD_* variables"), "{err}");
        assert!(load_with(&["demo"], &[("ETCDCTL_API", "3")]).is_ok());
    }

    #[test]
    fn errors_after_parsing_say_which_variable_set_the_flag() {
        let cli = load_with(&[], &[("ETCD_LISTEN_CLIENT_URLS", "ftp://x:1")]).unwrap();
        let err = cli.node.to_config().unwrap_err().to_string();
        assert!(err.contains("--listen-client-urls set by ETCD_LISTEN_CLIENT_URLS"), "{err}");
    }

    /// A config file with `text`, kept until the returned guard drops.
    fn config_file(text: &str) -> tempfile::TempPath {
        let path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_config_file_with_etcds_keys_sets_the_flags() {
        let file = config_file(
            "# etcd.conf.yml\n\
             name: 'infra1'\n\
             data-dir: /var/lib/synod\n\
             wal-segment-bytes: 1048576\n\
             listen-client-urls: http://10.0.0.1:2379,http://127.0.0.1:2379\n\
             initial-cluster: infra1=http://10.0.0.1:2380,infra2=http://10.0.0.2:2380\n\
             initial-cluster-state: existing\n\
             heartbeat-interval: 200\n\
             election-timeout: 2000\n\
             quota-backend-bytes: 8589934592\n\
             max-txn-ops: 256\n\
             grpc-keepalive-interval: 7200000000000\n\
             grpc-keepalive-timeout: \"30s\"\n\
             cipher-suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n\
             client-transport-security:\n\
             \x20 cert-file: /etc/synod/server.pem\n\
             \x20 key-file: /etc/synod/server-key.pem\n\
             \x20 client-cert-auth: true\n\
             \x20 trusted-ca-file: /etc/synod/ca.pem\n\
             \x20 auto-tls: false\n\
             peer-transport-security:\n\
             \x20 auto-tls: true\n\
             log-level: warn\n\
             logger: zap\n\
             log-outputs: [stderr, /var/log/synod.log]\n\
             auto-compaction-mode: periodic\n\
             auto-compaction-retention: \"1\"\n\
             strict-reconfig-check: true\n\
             discovery-srv:\n",
        );
        let path = file.to_str().unwrap();
        let cli = load_with(&["--config-file", path], &[]).unwrap();
        let n = &cli.node;
        assert_eq!(n.name, "infra1");
        assert_eq!(n.data_dir.as_deref(), Some(std::path::Path::new("/var/lib/synod")));
        assert_eq!(n.wal_segment_bytes, 1 << 20);
        assert_eq!(n.listen_client_urls, "http://10.0.0.1:2379,http://127.0.0.1:2379");
        assert_eq!(n.initial_cluster_state, ClusterState::Existing);
        assert_eq!((n.heartbeat_interval, n.election_timeout), (200, 2000));
        assert_eq!(n.quota_backend_bytes, 8 << 30);
        assert_eq!(n.max_txn_ops, 256);
        assert_eq!(n.grpc_keepalive_interval, Duration::from_secs(7200), "a number is nanoseconds, as in etcd");
        assert_eq!(n.grpc_keepalive_timeout, Duration::from_secs(30));
        assert_eq!(n.cipher_suites, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384");
        assert_eq!(n.cert_file.as_deref(), Some(std::path::Path::new("/etc/synod/server.pem")));
        assert_eq!(n.key_file.as_deref(), Some(std::path::Path::new("/etc/synod/server-key.pem")));
        assert_eq!(n.trusted_ca_file.as_deref(), Some(std::path::Path::new("/etc/synod/ca.pem")));
        assert!(n.client_cert_auth && !n.auto_tls && n.peer_auto_tls && n.peer_cert_file.is_none());
        assert_eq!(
            (n.log_level, n.logger, n.log_outputs.as_str()),
            (LogLevel::Warn, Logger::Zap, "stderr,/var/log/synod.log")
        );
        assert_eq!((n.auto_compaction_mode, n.auto_compaction_retention.as_str()), (CompactionMode::Periodic, "1"));
        assert!(n.origins.contains(&("cert-file".into(), Origin::File("client-transport-security.cert-file".into()))));
        assert_eq!(n.config_file.as_deref(), Some(file.as_ref()));
        // The same file named by ETCD_CONFIG_FILE.
        let from_env = load_with(&[], &[("ETCD_CONFIG_FILE", path)]).unwrap();
        assert_eq!(format!("{:?}", from_env.node), format!("{:?}", cli.node));
    }

    #[test]
    fn every_flag_is_a_config_file_key() {
        for flag in member_flags() {
            let value = sample(&flag);
            let file = config_file(&format!("{flag}: \"{value}\"\n"));
            let from_file = node(&["--config-file", file.to_str().unwrap()], &[])
                .unwrap_or_else(|e| panic!("{flag}: {value}: {e}"));
            let from_flag = node(&[&format!("--{flag}={value}")], &[]).unwrap();
            assert_eq!(
                format!("{:?}", NodeArgs { config_file: None, ..from_file }),
                format!("{from_flag:?}"),
                "key {flag}"
            );
        }
    }

    #[test]
    fn a_config_file_key_synod_does_not_serve_is_refused_with_its_name() {
        let table: &[(&str, &str)] = &[
            ("no-such-key: 1\n", "unknown key no-such-key"),
            ("wal-dir: /x\n", "key wal-dir is etcd's, which Synod does not serve: Synod keeps"),
            ("enable-v2: false\n", "key enable-v2 is etcd's"),
            ("client-transport-security:\n  crl-file: x\n", "unknown key client-transport-security.crl-file"),
            ("peer-transport-security: yes\n", "key peer-transport-security must be a mapping"),
            ("config-file: other.yaml\n", "unknown key config-file"),
            (
                "cert-file: a\nclient-transport-security:\n  cert-file: b\n",
                "keys cert-file and client-transport-security.cert-file both set --cert-file",
            ),
            ("heartbeat-interval: fast\n", "key heartbeat-interval: invalid value 'fast'"),
            (
                "client-transport-security:\n  client-cert-auth: maybe\n",
                "key client-transport-security.client-cert-auth: invalid value",
            ),
            ("grpc-keepalive-timeout: -5\n", "key grpc-keepalive-timeout: -5 is not a duration"),
            ("name: [a, [b]]\n", "key name must be a value, not a list"),
            ("name: a\nname: b\n", "not valid YAML"),
            ("- name\n", "must be a mapping"),
        ];
        for &(text, want) in table {
            let file = config_file(text);
            let err = refusal(&["--config-file", file.to_str().unwrap()], &[]);
            assert!(err.contains("config file") && err.contains(want), "{text:?}: {err}");
        }
        let err = refusal(&["--config-file", "/no/such/file.yaml"], &[]);
        assert!(err.contains("cannot read config file /no/such/file.yaml"), "{err}");
    }

    #[test]
    fn beside_a_config_file_every_other_flag_and_variable_is_refused() {
        let file = config_file("name: a\n");
        let path = file.to_str().unwrap();
        let err = refusal(&["--config-file", path, "--name", "b", "--auto-tls"], &[("ETCD_CLIENT_CERT_AUTH", "true")]);
        assert!(
            err.contains(&format!("--config-file {path} is given"))
                && err.contains("--name, --auto-tls, ETCD_CLIENT_CERT_AUTH are also set"),
            "{err}"
        );
        let err = refusal(&[], &[("ETCD_CONFIG_FILE", path), ("ETCD_NAME", "b")]);
        assert!(err.contains(&format!("ETCD_CONFIG_FILE {path} is given")) && err.contains("ETCD_NAME is"), "{err}");
        let err = refusal(&["--config-file", path], &[("ETCD_CONFIG_FILE", path)]);
        assert!(err.contains("ETCD_CONFIG_FILE is also set"), "{err}");
        assert!(load_with(&["--config-file", path], &[("ETCDCTL_API", "3")]).is_ok());
    }

    #[test]
    fn the_nanosecond_keys_are_exactly_the_duration_flags() {
        let durations: Vec<String> = member_flags()
            .into_iter()
            .filter(|f| node(&[&format!("--{f}=1ns")], &[]).is_ok() && node(&[&format!("--{f}=1")], &[]).is_err())
            .collect();
        let mut listed: Vec<String> = NANOSECOND_FLAGS.iter().map(|f| f.to_string()).collect();
        listed.sort();
        let mut found = durations.clone();
        found.sort();
        assert_eq!(found, listed, "file::NANOSECOND_FLAGS must list every duration flag");
    }
}
