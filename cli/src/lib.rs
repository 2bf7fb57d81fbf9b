//! The `antcode` command-line client: it drives a server's REST API from a terminal or a script.
//!
//! Its one job is to turn a command such as `antcode run hello --follow` into calls of the
//! `/api/v1` API of control, directly or through the edge's TLS `/api`, and to show the answers:
//! aligned tables for people, the API's JSON for scripts (`--output json`). It knows the
//! platform only through that API; it shares no code with the server.
//!
//! ```text
//! antcode login --url http://127.0.0.1:8000 --username admin
//! antcode projects push ./hello
//! antcode tasks create hello --project hello --arg world
//! antcode run hello --follow        # exits with the run's exit code
//! ```
//!
//! The binary flattens [`ClientCommand`] into its command list and calls [`run`]. Profiles are
//! in [`config`], the HTTP client in [`api`], directory packing in [`pack`], live logs in
//! [`follow`].

pub mod api;
pub mod args;
mod commands;
pub mod config;
pub mod error;
pub mod follow;
pub mod output;
pub mod pack;

pub use args::ClientCommand;
pub use error::Error;

/// Runs one client command; its exit code. An error is printed as one line on standard error
/// (`error: 404 Not Found: task nope not found`) and exits 1; `run --follow`, `logs -f` and
/// `invoke` exit with the run's exit code. `full_command` is the binary's whole command line,
/// which `completions` describes.
pub async fn run(command: ClientCommand, full_command: impl FnOnce() -> clap::Command) -> i32 {
    match commands::dispatch(command, full_command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", e.to_string().replace('\n', " "));
            1
        }
    }
}
