//! Files the daemon touches on behalf of others: its own directories checked
//! before use, reads that can neither block nor grow without bound, and
//! writes that never go through a link.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// A directory of ours (`StateDir`, `LogDir`) that cannot be used safely.
#[derive(Debug)]
pub enum DirError {
    Create {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    NotADirectory {
        what: &'static str,
        path: PathBuf,
    },
    Owner {
        what: &'static str,
        path: PathBuf,
        uid: u32,
    },
    Writable {
        what: &'static str,
        path: PathBuf,
        mode: u32,
    },
    NotWritable {
        what: &'static str,
        path: PathBuf,
    },
}

impl fmt::Display for DirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirError::Create { what, path, source } => {
                write!(f, "cannot create {what} {}: {source}", path.display())
            }
            DirError::NotADirectory { what, path } => {
                write!(f, "{what} {} is not a directory", path.display())
            }
            DirError::Owner { what, path, uid } => write!(
                f,
                "{what} {} belongs to user {uid}, not to the daemon's user or root: its owner \
                 could plant links there that the daemon would write through; use a directory \
                 of your own",
                path.display()
            ),
            DirError::Writable { what, path, mode } => write!(
                f,
                "{what} {} is writable by other users or its group (mode {mode:04o}): they \
                 could plant links there that the daemon would write through; chmod go-w {}",
                path.display(),
                path.display()
            ),
            DirError::NotWritable { what, path } => write!(
                f,
                "{what} {} is not writable by the daemon's user; chown it to that user",
                path.display()
            ),
        }
    }
}

impl std::error::Error for DirError {}

/// Makes sure `path` is a directory only the daemon's user (or root) can
/// write to, and the daemon can, creating it (mode 0700) when it is
/// missing. `what` names it in errors (`StateDir`, `LogDir`).
pub fn make_private_dir(what: &'static str, path: &Path) -> Result<(), DirError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| DirError::Create {
            what,
            path: path.to_path_buf(),
            source,
        })?;
    check_private_dir(what, path)
}

/// The checks of [`make_private_dir`] on a directory that exists, without
/// creating anything (for `--check`). Group-writable counts as writable by
/// others: every member of the group could plant links.
pub fn check_private_dir(what: &'static str, path: &Path) -> Result<(), DirError> {
    let metadata = fs::metadata(path).map_err(|source| DirError::Create {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let owned = path.to_path_buf();
    if !metadata.is_dir() {
        return Err(DirError::NotADirectory { what, path: owned });
    }
    // SAFETY: geteuid cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    if metadata.uid() != euid && metadata.uid() != 0 {
        let uid = metadata.uid();
        return Err(DirError::Owner {
            what,
            path: owned,
            uid,
        });
    }
    let mode = metadata.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(DirError::Writable {
            what,
            path: owned,
            mode,
        });
    }
    // A directory of root's that the daemon's user cannot write to passes
    // the checks above, and would fail every write later.
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
        DirError::NotADirectory {
            what,
            path: owned.clone(),
        }
    })?;
    // SAFETY: a valid C string; faccessat only reads it.
    let allowed = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    if allowed != 0 {
        return Err(DirError::NotWritable { what, path: owned });
    }
    Ok(())
}

/// Options for creating or replacing a file of ours: never through a link
/// (`O_NOFOLLOW`), private (mode 0600), and not inherited by children.
pub fn private_open_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    options
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn make_dirs_private(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Replaces `path` with `bytes` atomically (a temp file, fsync, rename,
/// and the directory synced), mode 0600, creating the directory with mode
/// 0700 when it is missing. The temp file is a new file, never an existing
/// one or a link's target: one left by a crash (or planted) is removed, not
/// written through.
pub fn write_private_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    make_dirs_private(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let create = || {
            private_open_options()
                .write(true)
                .create_new(true)
                .open(&temp)
        };
        let mut f = match create() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(&temp)?;
                create()?
            }
            other => other?,
        };
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&temp, path)?;
        // The rename is durable only once the directory is synced.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Why [`read_capped`] read nothing.
#[derive(Debug)]
pub enum CappedReadError {
    Io(io::Error),
    /// A link, where none is followed.
    Link,
    /// Not a regular file: what it is instead (`a FIFO`, …).
    NotRegular(&'static str),
    TooLarge {
        cap: u64,
    },
}

impl fmt::Display for CappedReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CappedReadError::Io(e) => e.fmt(f),
            CappedReadError::Link => f.write_str("is a symbolic link"),
            CappedReadError::NotRegular(what) => write!(f, "is {what}, not a regular file"),
            CappedReadError::TooLarge { cap } => write!(f, "is larger than {}", size(*cap)),
        }
    }
}

impl std::error::Error for CappedReadError {}

/// `4 KiB`, `1 MiB`.
pub fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

/// What a file that is not a regular one is, for messages.
fn not_regular(metadata: &fs::Metadata) -> Option<&'static str> {
    let file_type = metadata.file_type();
    Some(if file_type.is_file() {
        return None;
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else {
        "a symbolic link"
    })
}

/// Reads the regular file at `path`, at most `cap` bytes, and its metadata.
/// Never blocks on a FIFO, never opens a device (opening some has effects,
/// such as rewinding a tape) and refuses a file over `cap` instead of
/// reading it all. With `follow_links` false, a link at `path` is refused.
pub fn read_capped(
    path: &Path,
    cap: u64,
    follow_links: bool,
) -> Result<(Vec<u8>, fs::Metadata), CappedReadError> {
    let looked = if follow_links {
        fs::metadata(path)
    } else {
        fs::symlink_metadata(path)
    }
    .map_err(CappedReadError::Io)?;
    if looked.file_type().is_symlink() {
        return Err(CappedReadError::Link);
    }
    if let Some(what) = not_regular(&looked) {
        return Err(CappedReadError::NotRegular(what));
    }
    // It may have been replaced since: O_NONBLOCK makes opening a FIFO
    // return at once instead of waiting for a writer, O_NOCTTY keeps a
    // terminal from becoming ours, and fstat says what was really opened.
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    if !follow_links {
        flags |= libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) if !follow_links => CappedReadError::Link,
            _ => CappedReadError::Io(e),
        })?;
    let metadata = file.metadata().map_err(CappedReadError::Io)?;
    if let Some(what) = not_regular(&metadata) {
        return Err(CappedReadError::NotRegular(what));
    }
    if metadata.len() > cap {
        return Err(CappedReadError::TooLarge { cap });
    }
    // The size can change while we read: one byte over is enough to know.
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(CappedReadError::Io)?;
    if bytes.len() as u64 > cap {
        return Err(CappedReadError::TooLarge { cap });
    }
    Ok((bytes, metadata))
}

/// A [`read_capped`] (following links) on a thread of its own: a file on a
/// dead network mount blocks in the kernel, and only this thread waits for
/// it. Its owner keeps a read that did not answer in time and waits on it
/// again rather than starting another, so a file that never answers costs
/// one thread, not one per attempt. The thread is not joined: it may sit in
/// an uninterruptible read until the mount comes back.
pub struct SlowRead {
    pub path: PathBuf,
    answer: Receiver<Result<Vec<u8>, CappedReadError>>,
}

impl SlowRead {
    pub fn start(path: &Path, cap: u64) -> Result<SlowRead, CappedReadError> {
        let (sender, answer) = crossbeam_channel::bounded(1);
        let owned = path.to_path_buf();
        std::thread::Builder::new()
            .name("file-read".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = sender.send(read_capped(&owned, cap, true).map(|(bytes, _)| bytes));
            })
            .map_err(CappedReadError::Io)?;
        Ok(SlowRead {
            path: path.to_path_buf(),
            answer,
        })
    }

    /// The file's content, or the read itself back when it has not
    /// answered within `limit`.
    pub fn wait(self, limit: Duration) -> Result<Result<Vec<u8>, CappedReadError>, SlowRead> {
        match self.answer.recv_timeout(limit) {
            Ok(answer) => Ok(answer),
            Err(RecvTimeoutError::Timeout) => Err(self),
            Err(RecvTimeoutError::Disconnected) => Ok(Err(CappedReadError::Io(io::Error::other(
                "the reading thread ended without an answer",
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn reads_regular_files_up_to_the_cap_only() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        fs::write(&small, "1234").unwrap();
        assert_eq!(read_capped(&small, 4, false).unwrap().0, b"1234");
        let error = read_capped(&small, 3, false).unwrap_err();
        assert!(matches!(error, CappedReadError::TooLarge { cap: 3 }));
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string; mkfifo touches nothing else.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // No writer: a blocking open would never return.
        let error = read_capped(&fifo, 4096, true).unwrap_err();
        assert!(error.to_string().contains("FIFO"), "{error}");
        let error = read_capped(Path::new("/dev/zero"), 4096, true).unwrap_err();
        assert_eq!(
            error.to_string(),
            "is a character device, not a regular file"
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&small, &link).unwrap();
        assert_eq!(read_capped(&link, 4096, true).unwrap().0, b"1234");
        let error = read_capped(&link, 4096, false).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
    }

    #[test]
    fn a_slow_read_that_did_not_answer_yet_is_waited_on_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repository");
        fs::write(&path, "/srv/repo\n").unwrap();
        let mut read = SlowRead::start(&path, 4096).unwrap();
        let answer = loop {
            match read.wait(Duration::ZERO) {
                Ok(answer) => break answer,
                Err(pending) => read = pending,
            }
        };
        assert_eq!(answer.unwrap(), b"/srv/repo\n");
    }

    #[test]
    fn private_dirs_are_made_private_and_shared_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a").join("state");
        assert!(check_private_dir("StateDir", &state).is_err(), "missing");
        make_private_dir("StateDir", &state).unwrap();
        let mode = fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        check_private_dir("StateDir", &state).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o770)).unwrap();
        let error = check_private_dir("StateDir", &state)
            .unwrap_err()
            .to_string();
        assert!(error.contains("StateDir"), "{error}");
        assert!(error.contains("chmod go-w"), "{error}");
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let error = make_private_dir("LogDir", &file).unwrap_err();
        assert!(matches!(
            error,
            DirError::Create { .. } | DirError::NotADirectory { .. }
        ));
    }
}
