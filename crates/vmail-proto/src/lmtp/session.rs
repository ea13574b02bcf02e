//! The LMTP session as a pure state machine: the caller reads, calls
//! [`Session::advance`] with what it has, performs the returned [`Action`] and calls
//! again with the rest. Verdicts (is this recipient deliverable? was the message
//! delivered to each?) come from the caller through [`Session::rcpt_verdict`] and
//! [`Session::data_verdicts`].
//!
//! Pipelining (RFC 2920): commands are answered strictly in order, one [`Action`] each,
//! so a caller that writes replies as they come and flushes whenever its input buffer
//! runs dry (before it would block reading) answers a pipelined group in one write. Only
//! DATA's 354 and the replies after the data must be flushed at once: the client waits
//! for them.

use super::command::{find_line, parse_command, Command, LineTooLong, MailFrom};
use super::data::{DataDecoder, DataProgress, LineEnds};
use super::{Mailbox, Reply, Status};

/// What the server is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Our name, in the greeting and the LHLO reply.
    pub hostname: String,
    /// Largest message accepted, in bytes (advertised as `SIZE`); `u64::MAX` for no
    /// limit, advertised as `SIZE 0` (RFC 1870 4: zero means no fixed maximum).
    pub max_size: u64,
    /// Most recipients per transaction; more get 452 4.5.3 and Postfix sends them in
    /// the next transaction (RFC 5321 4.5.3.1.8 asks servers to take at least 100).
    pub max_recipients: usize,
    /// Refused commands tolerated per connection before it is closed with 421.
    pub max_errors: u32,
    /// Line ends of the decoded message.
    pub line_ends: LineEnds,
}

/// One mail transaction: MAIL and the recipients accepted so far, in RCPT order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub mail: MailFrom,
    pub recipients: Vec<Mailbox>,
}

/// What the caller must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Everything usable in the input was consumed: flush pending replies, read more.
    NeedInput,
    /// Send this reply (it may wait in the output buffer while more input is pending).
    Reply(Reply),
    /// Send this reply, flush, close the connection.
    Close(Reply),
    /// Decide whether this recipient is deliverable and call [`Session::rcpt_verdict`].
    Recipient(Mailbox),
    /// Send DATA's 354 and flush; the following calls decode message data into `body`.
    StartData(Reply),
    /// The message is complete (its last bytes are in `body`): deliver it to
    /// [`Session::transaction`]'s recipients and call [`Session::data_verdicts`].
    Message { size: u64 },
    /// Send these replies (one per accepted recipient) and flush: the message was
    /// refused as a whole, for being too big. Discard what was spooled.
    Replies(Vec<Reply>),
}

#[derive(Debug, Clone)]
enum Phase {
    /// Before LHLO.
    Start,
    /// After LHLO, no transaction.
    Ready,
    /// Inside a transaction (MAIL given).
    Mail,
    /// A recipient waits for the caller's verdict.
    AwaitRcpt(Mailbox),
    /// Reading message data.
    Data(DataDecoder),
    /// The message waits for the caller's verdicts.
    AwaitData,
    /// After QUIT or too many errors.
    Closed,
}

/// The server side of one LMTP connection.
#[derive(Debug, Clone)]
pub struct Session {
    config: Config,
    phase: Phase,
    transaction: Option<Transaction>,
    /// Inside an over-long line, discarding to its LF.
    skipping: bool,
    errors: u32,
}

fn bad_sequence(text: &str) -> Reply {
    Reply::new(503, Some(Status::new(5, 5, 1)), text)
}

impl Session {
    pub fn new(config: Config) -> Session {
        Session {
            config,
            phase: Phase::Start,
            transaction: None,
            skipping: false,
            errors: 0,
        }
    }

    /// The greeting to send on connect.
    pub fn greeting(&self) -> Reply {
        Reply::new(220, None, &format!("{} LMTP ready", self.config.hostname))
    }

    /// Inside an over-long command line whose bytes are being discarded: the line has
    /// begun although none of it is left to buffer, so its deadline runs.
    pub fn mid_line(&self) -> bool {
        self.skipping
    }

    /// The current transaction, if MAIL was accepted.
    pub fn transaction(&self) -> Option<&Transaction> {
        self.transaction.as_ref()
    }

    /// Consumes a prefix of `input` (the returned count) and says what to do. Message
    /// data is decoded into `body`, which the caller empties as it writes it away.
    pub fn advance(&mut self, input: &[u8], body: &mut Vec<u8>) -> (usize, Action) {
        match &mut self.phase {
            Phase::Closed => return (0, Action::NeedInput),
            Phase::AwaitRcpt(_) => {
                // A caller's bug: asked to go on without a verdict. Never block, never
                // panic: the recipient fails temporarily and Postfix retries it.
                debug_assert!(false, "advance() before rcpt_verdict()");
                return (
                    0,
                    Action::Reply(self.rcpt_verdict(Reply::temporary_failure(""))),
                );
            }
            Phase::AwaitData => {
                debug_assert!(false, "advance() before data_verdicts()");
                return (0, Action::Replies(self.data_verdicts(Vec::new())));
            }
            Phase::Data(_) => return self.data(input, body),
            _ => {}
        }
        if self.skipping {
            return match input.iter().position(|&b| b == b'\n') {
                None => (input.len(), Action::NeedInput),
                Some(lf) => {
                    self.skipping = false;
                    let reply = Reply::new(500, Some(Status::new(5, 5, 2)), "Error: line too long");
                    (lf + 1, self.refuse(reply))
                }
            };
        }
        match find_line(input) {
            Ok(None) => (0, Action::NeedInput),
            Err(LineTooLong) => {
                self.skipping = true;
                (input.len(), Action::NeedInput)
            }
            Ok(Some(n)) => (n, self.command(&input[..n])),
        }
    }

    fn data(&mut self, input: &[u8], body: &mut Vec<u8>) -> (usize, Action) {
        let Phase::Data(decoder) = &mut self.phase else {
            return (0, Action::NeedInput);
        };
        match decoder.feed(input, body) {
            DataProgress::More => (input.len(), Action::NeedInput),
            DataProgress::End { consumed } => {
                let size = decoder.size();
                if decoder.over_limit() {
                    let n = self.transaction.as_ref().map_or(0, |t| t.recipients.len());
                    self.reset();
                    (consumed, Action::Replies(vec![Reply::too_big(); n]))
                } else {
                    self.phase = Phase::AwaitData;
                    (consumed, Action::Message { size })
                }
            }
        }
    }

    /// Counts a refusal; too many of them end the connection (a client that is not
    /// Postfix, or is confused, gets no endless supply of errors).
    fn refuse(&mut self, reply: Reply) -> Action {
        self.errors += 1;
        if self.errors > self.config.max_errors {
            self.phase = Phase::Closed;
            return Action::Close(Reply::new(
                421,
                Some(Status::new(4, 7, 0)),
                &format!("{} Error: too many errors", self.config.hostname),
            ));
        }
        Action::Reply(reply)
    }

    fn reset(&mut self) {
        self.transaction = None;
        self.phase = match self.phase {
            Phase::Start => Phase::Start,
            _ => Phase::Ready,
        };
    }

    fn command(&mut self, line: &[u8]) -> Action {
        let command = match parse_command(line) {
            Ok(c) => c,
            Err(reply) => return self.refuse(reply),
        };
        let in_mail = matches!(self.phase, Phase::Mail);
        match command {
            Command::Lhlo(_) => {
                // LHLO, like EHLO, ends any transaction (RFC 5321 4.1.4).
                self.transaction = None;
                self.phase = Phase::Ready;
                Action::Reply(self.capabilities())
            }
            Command::Rset => {
                self.reset();
                Action::Reply(Reply::ok("Ok"))
            }
            Command::Noop => Action::Reply(Reply::ok("Ok")),
            Command::Vrfy => Action::Reply(Reply::new(
                252,
                Some(Status::new(2, 5, 0)),
                "Send mail and I will try my best",
            )),
            Command::Quit => {
                self.phase = Phase::Closed;
                Action::Close(Reply::new(221, Some(Status::new(2, 0, 0)), "Bye"))
            }
            Command::Mail(_) if matches!(self.phase, Phase::Start) => {
                self.refuse(bad_sequence("Error: send LHLO first"))
            }
            Command::Mail(_) if in_mail => self.refuse(bad_sequence("Error: nested MAIL command")),
            Command::Mail(mail) => self.mail(mail),
            Command::Rcpt(_) if !in_mail => self.refuse(bad_sequence("Error: need MAIL command")),
            Command::Rcpt(rcpt) => self.rcpt(rcpt),
            Command::Data if !in_mail => self.refuse(bad_sequence("Error: need MAIL command")),
            Command::Data => match &self.transaction {
                Some(t) if !t.recipients.is_empty() => {
                    let decoder = DataDecoder::new(self.config.line_ends, self.config.max_size);
                    self.phase = Phase::Data(decoder);
                    Action::StartData(Reply::new(354, None, "End data with <CR><LF>.<CR><LF>"))
                }
                _ => self.refuse(bad_sequence("Error: no valid recipients")),
            },
        }
    }

    fn mail(&mut self, mail: MailFrom) -> Action {
        if mail.size.is_some_and(|n| n > self.config.max_size) {
            return Action::Reply(Reply::too_big());
        }
        if !mail.smtputf8 && mail.sender.as_ref().is_some_and(|s| !s.is_ascii()) {
            return Action::Reply(non_ascii());
        }
        self.transaction = Some(Transaction {
            mail,
            recipients: Vec::new(),
        });
        self.phase = Phase::Mail;
        Action::Reply(Reply::new(250, Some(Status::new(2, 1, 0)), "Ok"))
    }

    fn rcpt(&mut self, rcpt: Mailbox) -> Action {
        let Some(t) = &self.transaction else {
            return self.refuse(bad_sequence("Error: need MAIL command"));
        };
        if !t.mail.smtputf8 && !rcpt.is_ascii() {
            return Action::Reply(non_ascii());
        }
        if t.recipients.len() >= self.config.max_recipients {
            return Action::Reply(Reply::new(
                452,
                Some(Status::new(4, 5, 3)),
                "Error: too many recipients",
            ));
        }
        self.phase = Phase::AwaitRcpt(rcpt.clone());
        Action::Recipient(rcpt)
    }

    /// The caller's verdict on the recipient of the last [`Action::Recipient`]: a 2xx
    /// reply accepts it (usually 250 2.1.5), anything else refuses it. Returns the reply
    /// to send. Called at another time, it changes nothing and returns 503.
    pub fn rcpt_verdict(&mut self, verdict: Reply) -> Reply {
        let Phase::AwaitRcpt(rcpt) = std::mem::replace(&mut self.phase, Phase::Mail) else {
            return bad_sequence("Error: no recipient pending");
        };
        if verdict.is_positive() {
            if let Some(t) = &mut self.transaction {
                t.recipients.push(rcpt);
            }
        }
        verdict
    }

    /// The caller's verdicts after [`Action::Message`], one per accepted recipient in RCPT
    /// order; returns the replies to send, exactly one per accepted recipient (RFC 2033
    /// 4.2): missing verdicts become 451 4.3.0, extra ones are dropped. The transaction
    /// ends. Called at another time, it returns nothing.
    pub fn data_verdicts(&mut self, verdicts: Vec<Reply>) -> Vec<Reply> {
        if !matches!(self.phase, Phase::AwaitData) {
            return Vec::new();
        }
        let n = self.transaction.as_ref().map_or(0, |t| t.recipients.len());
        let mut replies = verdicts;
        replies.truncate(n);
        while replies.len() < n {
            replies.push(Reply::temporary_failure("Error: no delivery status"));
        }
        self.reset();
        replies
    }

    /// The LHLO reply: our name, then one capability per line (see the module
    /// documentation for why these).
    fn capabilities(&self) -> Reply {
        // Postfix reads the number into a signed off_t: u64::MAX would not fit.
        let size = match self.config.max_size {
            u64::MAX => "SIZE 0".to_string(),
            n => format!("SIZE {n}"),
        };
        Reply::multi(
            250,
            None,
            [
                self.config.hostname.as_str(),
                "PIPELINING",
                "ENHANCEDSTATUSCODES",
                "8BITMIME",
                size.as_str(),
                "SMTPUTF8",
            ],
        )
    }
}

/// RFC 6531 3.7.4.1: a non-ASCII address without SMTPUTF8 on MAIL.
fn non_ascii() -> Reply {
    Reply::new(
        553,
        Some(Status::new(5, 6, 7)),
        "Error: non-ASCII address without SMTPUTF8",
    )
}
