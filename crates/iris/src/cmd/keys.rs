//! The input side of `iris chat`: reads stdin as it arrives, not line by line, so the chat knows
//! the person is typing before they press Enter. On a terminal it turns off the terminal's own
//! line editing and echo (`stty -icanon -echo`, restored on drop) and echoes and edits the line
//! itself; from a pipe it reads the bytes as they come. Knows nothing of the chat.

use std::io::{IsTerminal, Write};
use std::process::{Command, Stdio};

use tokio::io::{AsyncRead, AsyncReadExt};

/// Erase the previous character (DEL, what most terminals send for Backspace, and BS).
const ERASE: [u8; 2] = [0x7f, 0x08];
/// End of input on an empty line (Ctrl-D).
const EOT: u8 = 0x04;

/// What one read of the keyboard produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// The line being typed changed (a character typed or erased); `empty` when nothing is left.
    Edited {
        /// Whether the line is now empty.
        empty: bool,
    },
    /// A whole line, Enter pressed.
    Line(String),
    /// End of input.
    End,
}

/// The line being typed, and the terminal mode to restore.
pub struct Keyboard<R> {
    input: R,
    line: String,
    /// Bytes of a UTF-8 character split across reads.
    partial: Vec<u8>,
    /// Inputs decoded but not yet returned (one read can hold several).
    ready: std::collections::VecDeque<Input>,
    /// `stty -g` of the terminal before the chat, when stdin is one.
    saved_tty: Option<String>,
}

impl Keyboard<tokio::io::Stdin> {
    /// The keyboard on stdin; takes the terminal out of line mode when stdin is a terminal.
    pub fn stdin() -> Self {
        let saved_tty = std::io::stdin().is_terminal().then(raw_mode).flatten();
        Self::new(tokio::io::stdin(), saved_tty)
    }
}

impl<R: AsyncRead + Unpin> Keyboard<R> {
    /// A keyboard over any byte source (tests feed it a pipe).
    pub fn new(input: R, saved_tty: Option<String>) -> Self {
        Self { input, line: String::new(), partial: Vec::new(), ready: Default::default(), saved_tty }
    }

    /// Whether this keyboard echoes what is typed (the terminal no longer does).
    pub fn echoes(&self) -> bool {
        self.saved_tty.is_some()
    }

    /// The line typed so far (to redraw it under something printed meanwhile).
    pub fn pending(&self) -> &str {
        &self.line
    }

    /// The next input; cancel-safe (bytes read are kept in `self`).
    pub async fn next(&mut self) -> std::io::Result<Input> {
        loop {
            if let Some(input) = self.ready.pop_front() {
                return Ok(input);
            }
            let mut buf = [0u8; 256];
            let n = self.input.read(&mut buf).await?;
            if n == 0 {
                if !self.line.is_empty() {
                    self.ready.push_back(Input::Line(std::mem::take(&mut self.line)));
                }
                self.ready.push_back(Input::End);
                continue;
            }
            buf[..n].iter().for_each(|&b| self.feed(b));
        }
    }

    fn feed(&mut self, b: u8) {
        let echo = self.echoes();
        match b {
            b'\n' | b'\r' => {
                if echo {
                    print_now("\r\n");
                }
                self.partial.clear();
                self.ready.push_back(Input::Line(std::mem::take(&mut self.line)));
            }
            EOT if self.line.is_empty() => self.ready.push_back(Input::End),
            _ if ERASE.contains(&b) => {
                if self.line.pop().is_some() {
                    if echo {
                        print_now("\u{8} \u{8}");
                    }
                    self.ready.push_back(Input::Edited { empty: self.line.is_empty() });
                }
            }
            _ if b < 0x20 => {} // other control keys: ignored
            _ => {
                self.partial.push(b);
                match std::str::from_utf8(&self.partial) {
                    Ok(c) => {
                        if echo {
                            print_now(c);
                        }
                        self.line.push_str(c);
                        self.partial.clear();
                        self.ready.push_back(Input::Edited { empty: false });
                    }
                    Err(e) if e.error_len().is_some() || self.partial.len() >= 4 => self.partial.clear(),
                    Err(_) => {} // the rest of the character is still to come
                }
            }
        }
    }
}

impl<R> Drop for Keyboard<R> {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved_tty {
            let _ = stty(&[saved.as_str()]);
        }
    }
}

/// Switches the terminal on stdin to character mode without echo; answers the mode to restore.
fn raw_mode() -> Option<String> {
    let saved = stty(&["-g"])?;
    stty(&["-icanon", "-echo", "min", "1", "time", "0"])?;
    Some(saved.trim().to_owned())
}

/// Runs `stty` on the terminal of stdin; its output when it worked.
fn stty(args: &[&str]) -> Option<String> {
    let out = Command::new("stty").args(args).stdin(Stdio::inherit()).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn print_now(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn inputs(bytes: &[u8]) -> Vec<Input> {
        let mut k = Keyboard::new(bytes, None);
        let mut got = Vec::new();
        loop {
            let input = k.next().await.unwrap();
            let end = input == Input::End;
            got.push(input);
            if end {
                return got;
            }
        }
    }

    #[tokio::test]
    async fn keys_edit_the_line_and_enter_sends_it() {
        use Input::*;
        let got = inputs("hé\u{7f}\u{7f}\u{7f}x\ny".as_bytes()).await;
        let edited = |empty| Edited { empty };
        let want = [edited(false), edited(false), edited(false), edited(true), edited(false)];
        assert_eq!(got[..5], want, "h, é (two bytes, one edit), three erases (the last one a no-op), x");
        assert_eq!(got[5..], [Line("x".into()), edited(false), Line("y".into()), End]);
        assert_eq!(inputs(b"\x04").await, [End], "Ctrl-D on an empty line ends");
    }
}
