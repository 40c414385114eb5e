//! A webhook receiver: a small real HTTP/1.1 server on `std::net`, standing
//! in for whoever holds a role (a network provider, a client).
//!
//! It records every request (method, path, headers with lowercased names,
//! body parsed as JSON) and answers `200 OK` (or the status set for the
//! path with [`Receiver::answer`]) with an empty body and
//! `Connection: close`. [`Receiver::stop`] closes its listening socket, so
//! nothing listens on the port until [`Receiver::restart`] binds the same
//! port again: a role's endpoint that is down for a while.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hook {
    pub method: String,
    pub path: String,
    /// Header names lowercased; a repeated header keeps its last value.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON, `Value::Null` when it is not JSON.
    pub body: Value,
    /// The body as text, for messages.
    pub raw: String,
}

impl Hook {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The event's `kind` (`task.opened`, `flow.notification`).
    pub fn kind(&self) -> &str {
        self.body["kind"].as_str().unwrap_or_default()
    }

    /// The event's `id` (`evt_...`).
    pub fn event_id(&self) -> &str {
        self.body["id"].as_str().unwrap_or_default()
    }
}

type Log = Arc<Mutex<Vec<Hook>>>;
/// The status to answer per path; 200 for any other.
type Statuses = Arc<Mutex<BTreeMap<String, u16>>>;

struct Running {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

pub struct Receiver {
    port: u16,
    log: Log,
    statuses: Statuses,
    running: Option<Running>,
}

impl Receiver {
    /// Starts listening on a free port of 127.0.0.1.
    #[allow(clippy::panic)] // a test's setup failing must stop the test
    pub fn start() -> Receiver {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("webhook receiver: cannot bind: {e}"));
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("webhook receiver: no local address: {e}"));
        let log = Log::default();
        let statuses = Statuses::default();
        let running = serve(listener, Arc::clone(&log), Arc::clone(&statuses));
        Receiver {
            port,
            log,
            statuses,
            running: Some(running),
        }
    }

    /// From now on, requests to `path` are answered with `status` (and
    /// still recorded).
    pub fn answer(&self, path: &str, status: u16) {
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.to_owned(), status);
    }

    /// `http://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Stops listening; when this returns nothing listens on the port (a
    /// connection attempt is refused).
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop.store(true, Ordering::SeqCst);
            // The thread drops the listener before it ends.
            let _ = running.thread.join();
        }
    }

    /// Listens again on the same port (retrying for a few seconds should
    /// the port still be held by something).
    #[allow(clippy::panic)] // a test's setup failing must stop the test
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind((Ipv4Addr::LOCALHOST, self.port)) {
                Ok(listener) => break listener,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!(
                    "webhook receiver: cannot listen on port {} again: {e}",
                    self.port
                ),
            }
        };
        self.running = Some(serve(
            listener,
            Arc::clone(&self.log),
            Arc::clone(&self.statuses),
        ));
    }

    /// Whether something accepts connections on the port (for checking the
    /// receiver really is down).
    pub fn is_reachable(&self) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
    }

    /// Every request so far, in arrival order.
    pub fn hooks(&self) -> Vec<Hook> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The requests to `path` whose event kind is `kind`.
    pub fn events(&self, path: &str, kind: &str) -> Vec<Hook> {
        self.hooks()
            .into_iter()
            .filter(|h| h.path == path && h.kind() == kind)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(listener: TcpListener, log: Log, statuses: Statuses) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        // Non-blocking accept, so the loop sees `stop` promptly.
        if listener.set_nonblocking(true).is_err() {
            return;
        }
        while !flag.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => handle(stream, &log, &statuses),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        drop(listener);
    });
    Running { stop, thread }
}

/// Reads one request, records it, answers (`200 OK` unless another status
/// is set for its path) and closes.
fn handle(stream: TcpStream, log: &Log, statuses: &Statuses) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let Some(hook) = read_request(&stream) else {
        return;
    };
    let status = statuses
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&hook.path)
        .copied()
        .unwrap_or(200);
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(hook);
    let mut stream = stream;
    let _ = stream.write_all(
        format!("HTTP/1.1 {status} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

fn read_request(stream: &TcpStream) -> Option<Hook> {
    let mut reader = BufReader::new(stream);
    let request_line = read_line(&mut reader)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();

    let mut headers = BTreeMap::new();
    loop {
        let line = read_line(&mut reader)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }

    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(&mut reader)?
    } else {
        let length: usize = match headers.get("content-length") {
            Some(v) => v.parse().ok()?,
            None => 0,
        };
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        body
    };
    let raw = String::from_utf8_lossy(&body).into_owned();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Some(Hook {
        method,
        path,
        headers,
        body,
        raw,
    })
}

/// One line without its CRLF; `None` at end of stream or on an error.
fn read_line(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
    }
}

fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size_line = read_line(reader)?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(reader)?.is_empty() {}
            return Some(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).ok()?;
        read_line(reader)?; // the CRLF after the chunk
    }
}
