//! The file layer under the inbox log: the few operations it needs on one directory, as a
//! trait, so that a simulated layer can fail or stop at any write or fsync, tear the last write
//! or drop unsynced bytes (`sim.rs`), and the real one ([`DirFs`]) is a thin wrapper over
//! `std::fs`. Knows nothing of records or inboxes.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

/// One directory of log files.
pub trait LogFs: Send + Sync + 'static {
    /// Names of the files in the directory, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// The whole content of a file.
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;
    /// Creates (or empties) a file and opens it for appending. The caller syncs the directory.
    fn create(&self, name: &str) -> io::Result<Box<dyn LogFile>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, name: &str) -> io::Result<Box<dyn LogFile>>;
    /// Opens an existing file for writing from its first byte, over what it holds (a recycled
    /// segment), and returns its length.
    fn open_over(&self, name: &str) -> io::Result<(Box<dyn LogFile>, u64)>;
    /// Renames a file, replacing any file called `to` (durable with the next
    /// [`sync_dir`](Self::sync_dir); a crash before it leaves one of the two names, never both).
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Cuts a file to `len` bytes and makes the cut durable.
    fn truncate(&self, name: &str, len: u64) -> io::Result<()>;
    /// Deletes a file (durable with the next [`sync_dir`](Self::sync_dir)).
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes creations and deletions in the directory durable.
    fn sync_dir(&self) -> io::Result<()>;
}

/// A file open for writing at a position that each write moves on.
pub trait LogFile: Send {
    /// Writes all of `buf` at the current position (not yet durable).
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes every byte written so far durable (fdatasync).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// The real file layer: a directory on the local disk.
pub struct DirFs {
    dir: PathBuf,
}

impl DirFs {
    /// The log directory `dir`, created if missing.
    pub fn open(dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }
}

impl LogFs for DirFs {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.dir.join(name))
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn LogFile>> {
        let file = OpenOptions::new().create(true).write(true).truncate(true).open(self.dir.join(name))?;
        Ok(Box::new(DirFile { file }))
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn LogFile>> {
        let file = OpenOptions::new().append(true).open(self.dir.join(name))?;
        Ok(Box::new(DirFile { file }))
    }

    fn open_over(&self, name: &str) -> io::Result<(Box<dyn LogFile>, u64)> {
        let file = OpenOptions::new().write(true).open(self.dir.join(name))?;
        let len = file.metadata()?.len();
        Ok((Box::new(DirFile { file }), len))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.dir.join(from), self.dir.join(to))
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(self.dir.join(name))?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.dir.join(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}

struct DirFile {
    file: File,
}

impl LogFile for DirFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}
