//! Subcommands, one module each. Flags are parsed by clap into [`Cli`];
//! each module resolves its raw flags into a plan (the only place flags are
//! checked) and runs it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use cloud::{Cloud, StateDir};

use crate::error::BakeError;

pub mod build;
pub mod check;
pub mod deprecate;
pub mod gc;
pub mod list;
pub mod prune;
pub mod show;

pub const AFTER_HELP: &str = "\
Exit codes:
    0  ok: baked, or found an image with the same input digest
    1  the builder failed (install or `searchd check`); nothing kept
    2  bad input: recipe, flags, missing files, unsupported by the backend
    3  the cloud or the machine failed (API, I/O, timeouts)
   10  `bake check`: a rebake is due (no image has the input digest)
  130  interrupted (SIGINT/SIGTERM); everything the run created was removed

Logs: KILN_LOG (or --log) filters the tracing output of bake, the cloud
crate and the AWS SDK on stderr: a level (`warn`, the default; `debug`
shows every AWS request) or directives (`cloud=debug,aws_smithy_runtime=warn`).
Progress lines (`bake: ...`) are not logs and always show.

`bake RECIPE` is short for `bake build RECIPE`.";

/// Content-addressed machine images for searchd: recipe -> image id.
#[derive(Debug, Parser)]
#[command(
    name = "bake",
    version,
    after_help = AFTER_HELP,
    subcommand_precedence_over_arg = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `bake RECIPE [--force] [--json]` = `bake build RECIPE …`.
    #[command(flatten)]
    pub build: build::Args,
}

#[derive(Debug, clap::Args)]
pub struct Global {
    /// State directory (local images, builders, locks, scratch files).
    #[arg(
        long,
        global = true,
        env = "KILN_STATE_DIR",
        default_value = ".kiln",
        value_name = "DIR"
    )]
    pub state_dir: PathBuf,
    /// Which cloud to bake in (only the backends built into this bake
    /// are accepted).
    #[arg(
        long,
        global = true,
        env = "KILN_BACKEND",
        default_value = "local",
        value_enum
    )]
    pub backend: Backend,
    /// aws: the S3 bucket for payloads, builder reports and image manifests.
    #[arg(long, global = true, env = "KILN_AWS_BUCKET", value_name = "BUCKET")]
    pub aws_bucket: Option<String>,
    /// aws: create the bucket if it does not exist (needs s3:CreateBucket,
    /// which policies/bake.json does not grant).
    #[arg(long, global = true, env = "KILN_AWS_CREATE_BUCKET")]
    pub aws_create_bucket: bool,
    /// Log filter for stderr: a level or tracing directives
    /// (`cloud=debug`).
    #[arg(
        long,
        global = true,
        env = "KILN_LOG",
        default_value = "warn",
        value_name = "FILTER"
    )]
    pub log: String,
}

/// The backends this bake was built with: a build without the `aws`
/// feature refuses `--backend aws` when parsing flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Images, builders and instances as processes and files here.
    Local,
    /// EC2, S3 and SSM.
    #[cfg(feature = "aws")]
    Aws,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bake the image a recipe describes (or find it by its input digest).
    #[command(after_help = AFTER_HELP)]
    Build(build::Args),
    /// List baked images, newest first.
    #[command(after_help = AFTER_HELP)]
    List(list::Args),
    /// Is a rebake due? Computes the input digest (builds the index,
    /// resolves the base; launches nothing) and says why when no image has
    /// it: exit 0 up to date, 10 due.
    #[command(after_help = AFTER_HELP)]
    Check(check::Args),
    /// Show one image's manifest.
    #[command(after_help = AFTER_HELP)]
    Show(show::Args),
    /// Delete old images, keeping the newest N per name and anything a group
    /// uses or may roll back to.
    #[command(after_help = AFTER_HELP)]
    Prune(prune::Args),
    /// Deprecate an image from a time on (aws: EC2 image deprecation, on
    /// its copies too): `bake list` shows it, `bake prune` deletes it unless
    /// a group uses it or may roll back to it. `--cancel` undoes it.
    #[command(after_help = AFTER_HELP)]
    Deprecate(deprecate::Args),
    /// Remove what crashed runs left behind (builders, images whose bake
    /// never completed and their copies, scratch files).
    #[command(after_help = AFTER_HELP)]
    Gc(gc::Args),
}

/// Opens the state dir and the backend.
pub async fn open(global: &Global) -> Result<(StateDir, Cloud), BakeError> {
    let state = StateDir::open(&global.state_dir)?;
    match global.backend {
        Backend::Local => {
            let cloud = Cloud::local(&state);
            Ok((state, cloud))
        }
        // Region, endpoint and credentials from the SDK's usual sources
        // (AWS_REGION, AWS_ENDPOINT_URL, profiles, roles).
        #[cfg(feature = "aws")]
        Backend::Aws => {
            let opts = cloud::aws::AwsOptions {
                bucket: global.aws_bucket.clone().filter(|b| !b.is_empty()),
                create_bucket: global.aws_create_bucket,
                ..cloud::aws::AwsOptions::default()
            };
            let (cloud, _calls) = cloud::aws::connect(opts).await?;
            Ok((state, cloud))
        }
    }
}

/// Sends `tracing` events (bake's, the cloud crate's, the AWS SDK's) to
/// stderr, filtered by `filter` (`--log`, `KILN_LOG`).
pub fn init_logging(filter: &str) -> Result<(), BakeError> {
    use std::io::IsTerminal;
    let env_filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| BakeError::Usage(format!("--log / KILN_LOG {filter:?}: {e}")))?;
    // Already set (a test embedding bake): keep that subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    Ok(())
}

pub fn run(cli: Cli) -> u8 {
    if let Err(e) = init_logging(&cli.global.log) {
        return fail(&e);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&BakeError::Failed(format!("cannot start the runtime: {e}"))),
    };
    let result = rt.block_on(async {
        match cli.command {
            Some(Command::Build(a)) => build::run(&cli.global, a).await,
            Some(Command::List(a)) => list::run(&cli.global, a).await,
            Some(Command::Show(a)) => show::run(&cli.global, a).await,
            Some(Command::Check(a)) => check::run(&cli.global, a).await,
            Some(Command::Prune(a)) => prune::run(&cli.global, a).await,
            Some(Command::Deprecate(a)) => deprecate::run(&cli.global, a).await,
            Some(Command::Gc(a)) => gc::run(&cli.global, a).await,
            None => build::run(&cli.global, cli.build).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

/// Prints an error the way every subcommand does and returns its exit code.
pub fn fail(err: &BakeError) -> u8 {
    eprintln!("bake: error: {err}");
    err.exit_code()
}

/// Prints `value` as one line of JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), BakeError> {
    let text = serde_json::to_string(value)
        .map_err(|e| BakeError::Failed(format!("cannot encode JSON: {e}")))?;
    write_stdout(&format!("{text}\n"))
}

/// Writes the result to stdout. A closed pipe (`bake list | head`) is not
/// an error worth a panic: the reader has what it wanted.
pub fn write_stdout(text: &str) -> Result<(), BakeError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(BakeError::io("cannot write", "stdout", e)),
    }
}

pub use kiln_common::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_backends_built_in_parse() {
        let c = Cli::try_parse_from(["bake", "--backend", "local", "list"]).unwrap();
        assert_eq!(c.global.backend, Backend::Local);
        let aws = Cli::try_parse_from(["bake", "--backend", "aws", "list"]);
        #[cfg(feature = "aws")]
        assert_eq!(aws.unwrap().global.backend, Backend::Aws);
        #[cfg(not(feature = "aws"))]
        assert!(
            aws.unwrap_err().to_string().contains("invalid value 'aws'"),
            "a local-only bake refuses aws while parsing"
        );
        assert!(Cli::try_parse_from(["bake", "--backend", "gcp", "list"]).is_err());
    }

    #[test]
    fn shorthand_and_subcommands_parse() {
        let c = Cli::try_parse_from(["bake", "images/searchd.toml", "--force"]).unwrap();
        assert!(c.command.is_none());
        assert_eq!(
            c.build.recipe.as_deref(),
            Some(std::path::Path::new("images/searchd.toml"))
        );
        assert!(c.build.force);
        let c = Cli::try_parse_from(["bake", "--state-dir", "/x", "list", "--json"]).unwrap();
        assert!(matches!(c.command, Some(Command::List(_))));
        assert_eq!(c.global.state_dir, PathBuf::from("/x"));
        let c = Cli::try_parse_from(["bake", "prune", "--keep", "2", "--state-dir", "/y"]).unwrap();
        assert_eq!(c.global.state_dir, PathBuf::from("/y"));
        let c = Cli::try_parse_from([
            "bake",
            "gc",
            "--region",
            "eu-west-1",
            "--region",
            "us-gov-east-1",
        ])
        .unwrap();
        let Some(Command::Gc(gc)) = c.command else {
            panic!("gc")
        };
        assert_eq!(
            gc.regions,
            [
                cloud::Region::new("eu-west-1"),
                cloud::Region::new("us-gov-east-1")
            ]
        );
        assert!(Cli::try_parse_from(["bake", "gc", "--region", "eu_west_1"]).is_err());
    }
}
