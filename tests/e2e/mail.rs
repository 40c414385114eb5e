//! Mail through the outbox, against a real SMTP server: Python's `aiosmtpd`
//! (`python3 -m pip install aiosmtpd`; `.ci/run` installs it).
//!
//! The server runs as a child process with a small handler that parses each
//! received message with Python's `email` package and prints it as one JSON
//! line (envelope, decoded headers, decoded text body, raw message). The
//! tests drive the library in-process: an outbox row with a `mailto:` target
//! and a [`DeliveryWorker`] with a [`MailConfig`] pointing at the server.
//!
//! Without `python3` or `aiosmtpd` the tests fail, saying what to install:
//! they never pass without having talked SMTP.

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rulehost::notify::{DeliveryWorker, MailConfig, Signal};
use rulehost::store::outbox::{self, Notification};
use rulehost::store::{self, Store};
use serde_json::{Value, json};

/// The SMTP server: every message it accepts is printed as one JSON line.
const SERVER: &str = r#"
import email, email.policy, json, sys, threading
from aiosmtpd.controller import Controller

class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "headers": {name.lower(): str(value) for name, value in msg.items()},
            "content_type": msg.get_content_type(),
            "charset": msg.get_content_charset(),
            "text": msg.get_content().replace("\r\n", "\n"),
            "raw": envelope.original_content.decode("utf-8", "replace"),
        }
        print(json.dumps(record), flush=True)
        return "250 Message accepted for delivery"

controller = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// One received message, as the handler printed it.
type Mails = Arc<Mutex<Vec<Value>>>;

struct SmtpServer {
    child: Child,
    port: u16,
    mails: Mails,
    stderr: Arc<Mutex<String>>,
}

impl SmtpServer {
    /// Starts an SMTP server on a free port of 127.0.0.1.
    fn start() -> SmtpServer {
        SmtpServer::start_on(free_port())
    }

    /// Starts an SMTP server on `port`; returns once it accepts connections.
    #[allow(clippy::panic)] // a test's setup failing must stop the test
    fn start_on(port: u16) -> SmtpServer {
        require_aiosmtpd();
        let mut child = Command::new("python3")
            .args(["-c", SERVER, &port.to_string()])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start python3 for the SMTP server: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    stderr
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let mails = Mails::default();
        let (ready_tx, ready_rx) = mpsc::channel();
        if let Some(pipe) = child.stdout.take() {
            let mails = Arc::clone(&mails);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if line == "ready" {
                        let _ = ready_tx.send(());
                    } else if let Ok(mail) = serde_json::from_str::<Value>(&line) {
                        mails
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(mail);
                    }
                }
            });
        }
        let mut server = SmtpServer {
            child,
            port,
            mails,
            stderr,
        };
        if let Err(e) = ready_rx.recv_timeout(Duration::from_secs(20)) {
            let _ = server.child.kill();
            let _ = server.child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "the aiosmtpd SMTP server on port {port} did not start ({e}); its stderr:\n{}",
                server.stderr()
            );
        }
        server
    }

    /// `127.0.0.1:<port>`, as `[mail] smtp` takes it.
    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn mails(&self) -> Vec<Value> {
        self.mails
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until at least `n` messages arrived; returns them all.
    #[allow(clippy::panic)]
    fn wait_for(&self, n: usize, store: &Store) -> Vec<Value> {
        eventually(Duration::from_secs(20), || {
            let mails = self.mails();
            (mails.len() >= n).then_some(mails)
        })
        .unwrap_or_else(|| {
            panic!(
                "{n} mail(s) expected at the SMTP server, got {:#?}\noutbox: {:#?}\nserver stderr:\n{}",
                self.mails(),
                outbox_rows(store),
                self.stderr()
            )
        })
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails the test, saying what to install, when the server cannot run.
#[allow(clippy::panic)]
fn require_aiosmtpd() {
    let found = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdin(Stdio::null())
        .output();
    match found {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "the mail tests need Python's aiosmtpd: `python3 -m pip install aiosmtpd` (.ci/run does)\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) => panic!(
            "the mail tests need python3 with aiosmtpd (`python3 -m pip install aiosmtpd`): cannot run python3: {e}"
        ),
    }
}

/// A port nothing listens on (bound, then released).
#[allow(clippy::panic)]
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[allow(clippy::panic)]
fn outbox_rows(store: &Store) -> Vec<Notification> {
    store
        .read(|c| outbox::list(c, None, 100))
        .unwrap_or_else(|e| panic!("outbox: {e}"))
}

/// The one outbox row, once `done` holds for it.
#[allow(clippy::panic)]
fn wait_for_row(store: &Store, what: &str, done: impl Fn(&Notification) -> bool) -> Notification {
    eventually(Duration::from_secs(20), || {
        let rows = outbox_rows(store);
        rows.first().filter(|row| done(row)).cloned()
    })
    .unwrap_or_else(|| panic!("the mail is not {what}: {:#?}", outbox_rows(store)))
}

#[allow(clippy::panic)]
fn enqueue_mail(store: &Store, data: &Value) -> String {
    let target = format!("mailto:{}", data["to"].as_str().unwrap_or_default());
    store
        .write(|tx| outbox::enqueue(tx, "mail", Some(&target), data, store::now_ms()))
        .unwrap_or_else(|e| panic!("enqueue: {e}"))
}

#[allow(clippy::panic)]
fn worker(store: &Store, signal: &Arc<Signal>, smtp: String) -> DeliveryWorker {
    DeliveryWorker::start(
        store.clone(),
        Arc::clone(signal),
        Some(MailConfig::new(smtp)),
    )
    .unwrap_or_else(|e| panic!("cannot start the delivery worker: {e}"))
}

#[test]
fn a_mail_reaches_the_smtp_server() {
    let server = SmtpServer::start();
    let store = Store::in_memory().unwrap();
    let signal = Arc::new(Signal::default());
    let text = "Bonjour Ada,\n\nyour line is installed — connexion prête.\nLog in at https://acme.test/line?id=42\n";
    let data = json!({
        "to": "ada@acme.test",
        "to_name": "Ada Lovelace",
        "subject": "Ligne prête ✓ — connect-client",
        "text": text,
    });
    let event = enqueue_mail(&store, &data);
    // Mostly non-ASCII: lettre sends it base64-encoded, not quoted-printable.
    let cyrillic = "Линия готова.\nСпасибо!\n";
    let second = enqueue_mail(
        &store,
        &json!({"to": "ivan@acme.test", "subject": "Линия", "text": cyrillic}),
    );
    let mut worker = worker(&store, &signal, server.address());
    signal.raise();

    let mails = server.wait_for(2, &store);
    let by_event = |event: &str| {
        mails
            .iter()
            .find(|mail| mail["headers"]["x-rulehost-event"] == event)
            .unwrap_or_else(|| panic!("no mail for {event}: {mails:#?}"))
    };
    let mail = by_event(&event);
    let header = |name: &str| {
        mail["headers"][name]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(mail["mail_from"], "rulehost@localhost", "{mail:#}");
    assert_eq!(mail["rcpt_tos"], json!(["ada@acme.test"]), "{mail:#}");
    assert_eq!(header("from"), "rulehost <rulehost@localhost>", "{mail:#}");
    assert_eq!(header("to"), "Ada Lovelace <ada@acme.test>", "{mail:#}");
    assert_eq!(
        header("subject"),
        "Ligne prête ✓ — connect-client",
        "{mail:#}"
    );
    assert_eq!(header("x-rulehost-event"), event, "{mail:#}");
    assert_eq!(header("x-rulehost-kind"), "mail", "{mail:#}");
    assert_eq!(
        header("message-id"),
        format!("<{event}@localhost>"),
        "{mail:#}"
    );
    assert_eq!(header("auto-submitted"), "auto-generated", "{mail:#}");
    assert_eq!(mail["content_type"], "text/plain", "{mail:#}");
    assert_eq!(mail["charset"], "utf-8", "{mail:#}");
    assert_eq!(mail["text"], text, "{mail:#}");
    assert_eq!(
        mail["headers"]["content-transfer-encoding"],
        "quoted-printable"
    );

    let mail = by_event(&second);
    assert_eq!(mail["headers"]["to"], "ivan@acme.test", "{mail:#}");
    assert_eq!(mail["headers"]["subject"], "Линия", "{mail:#}");
    assert_eq!(mail["headers"]["content-transfer-encoding"], "base64");
    assert_eq!(mail["text"], cyrillic, "{mail:#}");

    let rows = eventually(Duration::from_secs(20), || {
        let rows = outbox_rows(&store);
        rows.iter()
            .all(|row| row.state == "delivered")
            .then_some(rows)
    })
    .unwrap_or_else(|| panic!("not all delivered: {:#?}", outbox_rows(&store)));
    for row in &rows {
        assert_eq!(row.attempts, 1, "{row:#?}");
        assert_eq!(row.last_error, None, "{row:#?}");
    }
    // Delivered once: the worker does not send them again.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.mails().len(), 2, "{:#?}", server.mails());
    worker.stop();
}

#[test]
fn a_mail_queued_while_the_server_is_down_arrives_once_it_is_up() {
    let port = free_port();
    let store = Store::in_memory().unwrap();
    let signal = Arc::new(Signal::default());
    let data = json!({
        "to": "grace@acme.test",
        "subject": "Repair the line",
        "text": "A line fault was reported.\n",
    });
    let event = enqueue_mail(&store, &data);
    let mut worker = worker(&store, &signal, format!("127.0.0.1:{port}"));
    signal.raise();

    // Nothing listens: the attempts fail, and the mail stays pending.
    let row = wait_for_row(&store, "retried", |row| row.attempts >= 2);
    assert_eq!(row.state, "pending", "{row:#?}");
    let error = row.last_error.unwrap_or_default();
    assert!(error.starts_with("SMTP: "), "{error}");

    let server = SmtpServer::start_on(port);
    let mails = server.wait_for(1, &store);
    let mail = &mails[0];
    assert_eq!(mail["rcpt_tos"], json!(["grace@acme.test"]), "{mail:#}");
    assert_eq!(mail["headers"]["to"], "grace@acme.test", "{mail:#}");
    assert_eq!(mail["headers"]["subject"], "Repair the line", "{mail:#}");
    assert_eq!(mail["headers"]["x-rulehost-event"], event, "{mail:#}");
    assert_eq!(mail["text"], "A line fault was reported.\n", "{mail:#}");

    let row = wait_for_row(&store, "delivered", |row| row.state == "delivered");
    assert!(row.attempts >= 3, "{row:#?}");
    assert_eq!(row.last_error, None, "{row:#?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.mails().len(), 1, "{:#?}", server.mails());
    worker.stop();
}
