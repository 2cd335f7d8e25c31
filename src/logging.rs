//! Logging: simplelog to stderr and to `LogDir/restic-cronned.log`, which
//! file-rotate rotates at `MaxSize` MB and prunes after `MaxAge` days.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;

use file_rotate::compression::Compression;
use file_rotate::suffix::{AppendTimestamp, FileLimit};
use file_rotate::{ContentLimit, FileRotate};
use simplelog::{CombinedLogger, ConfigBuilder, LevelFilter, SharedLogger, WriteLogger};

use crate::config::Config;

/// The log file's name inside `LogDir`.
pub const LOG_FILE: &str = "restic-cronned.log";

/// Starts logging to stderr and, when its directory can be made, to the log
/// file. Returns a warning to log when the file cannot be used. Call it
/// before any thread starts (the local UTC offset is read here).
pub fn init(config: &Config) -> Option<String> {
    let mut builder = ConfigBuilder::new();
    builder
        .set_time_format_rfc3339()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off);
    let _ = builder.set_time_offset_to_local();
    let format = builder.build();
    let level = config.log_level;
    let mut loggers: Vec<Box<dyn SharedLogger>> =
        vec![WriteLogger::new(level, format.clone(), std::io::stderr())];
    let mut warning = None;
    // file-rotate panics when it cannot create the directory, so we make it
    // ourselves first and log to stderr only when that fails.
    match DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.log_dir)
    {
        Ok(()) => {
            let file = FileRotate::new(
                config.log_dir.join(LOG_FILE),
                AppendTimestamp::default(FileLimit::Age(chrono::Duration::days(i64::from(
                    config.log_max_age_days,
                )))),
                // Saturating: a large MaxSize must not wrap on 32-bit ARM.
                ContentLimit::BytesSurpassed(
                    usize::try_from(config.log_max_size_mb.saturating_mul(1 << 20))
                        .unwrap_or(usize::MAX),
                ),
                Compression::None,
                None,
            );
            loggers.push(WriteLogger::new(level, format, file));
        }
        Err(e) => {
            warning = Some(format!(
                "cannot create log directory {}: {e}; logging to stderr only",
                config.log_dir.display()
            ));
        }
    }
    // A second init (tests calling `run` twice) keeps the first logger.
    let _ = CombinedLogger::init(loggers);
    warning
}
