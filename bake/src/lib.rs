//! bake: recipe → machine image, content-addressed.
//!
//! Data flow of one bake (`cmd::build`): the recipe is parsed and validated
//! ([`recipe`]) into a plan; the files to install are gathered (the
//! snapshot built with the `searchd` library) and hashed; the base image is
//! resolved through the cloud seam; [`identity`] turns the base id, the
//! file bytes and the normalised recipe into the input digest; if an image carries that
//! digest it is the answer. Otherwise [`payload`] packs the files, a
//! builder installs them with `images/install.sh`, and its root becomes the
//! image. Everything the run creates is on a [`cleanup::Cleanup`] list that
//! runs on success, error and Ctrl-C.

/// `writeln!` into a `String` buffer (infallible), for results that go to
/// stdout in one [`cmd::write_stdout`] call.
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

pub mod cleanup;
pub mod cmd;
pub mod error;
pub mod identity;
pub mod payload;
pub mod recipe;

/// Exit codes (documented in `--help` and README).
pub mod exit {
    /// Baked, or found an image with the same digest; or the command did
    /// what it was asked.
    pub const OK: u8 = 0;
    /// The builder's install or `searchd check` failed (nothing kept).
    pub const CHECK_FAILED: u8 = 1;
    /// Bad input: recipe, flags, missing files, unsupported for the backend.
    pub const USAGE: u8 = 2;
    /// The cloud or the machine failed (API, I/O, timeouts).
    pub const FAILURE: u8 = 3;
    /// `bake check`: no image has the recipe's input digest; a rebake is
    /// due.
    pub const REBAKE_DUE: u8 = 10;
    /// Interrupted (SIGINT/SIGTERM); everything the run created was removed.
    pub const INTERRUPTED: u8 = 130;
}
