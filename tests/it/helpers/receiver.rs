//! A company's webhook endpoint, at the edge of the world.

use std::time::Duration;

use super::eventually;

/// How the test receiver answers one request.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    /// This status.
    Status(u16),
    /// This status with `Retry-After: secs`.
    StatusRetryAfter(u16, u64),
    /// Wait this long, then 200.
    Hang(Duration),
    /// 307 to this same endpoint (a client that followed it would be answered 200).
    Redirect,
    /// This status with a body of `x` that never ends.
    Endless(u16),
}

/// One webhook the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its headers.
    pub headers: reqwest::header::HeaderMap,
    /// Its body.
    pub body: String,
}

#[derive(Default)]
struct ReceiverState {
    received: std::sync::Mutex<Vec<Received>>,
    script: std::sync::Mutex<std::collections::VecDeque<Reply>>,
}

/// A company's webhook endpoint, at the edge of the world: records every request and answers
/// from a script (200 once the script is used up).
#[derive(Clone)]
pub struct TestReceiver {
    state: std::sync::Arc<ReceiverState>,
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    /// The port.
    pub port: u16,
}

#[poem::handler]
async fn receive(
    req: &poem::Request,
    body: poem::Body,
    state: poem::web::Data<&std::sync::Arc<ReceiverState>>,
) -> poem::Response {
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in req.headers() {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(k.as_str().as_bytes()),
            reqwest::header::HeaderValue::from_bytes(v.as_bytes()),
        ) {
            headers.insert(name, value);
        }
    }
    let body = body.into_string().await.unwrap_or_default();
    let reply = state.script.lock().expect("lock").pop_front();
    if let Some(Reply::Hang(d)) = reply {
        tokio::time::sleep(d).await;
    }
    state
        .received
        .lock()
        .expect("lock")
        .push(Received { headers, body });
    match reply {
        Some(Reply::Status(s)) => poem::Response::builder()
            .status(poem::http::StatusCode::from_u16(s).expect("status"))
            .body("scripted"),
        Some(Reply::StatusRetryAfter(s, secs)) => poem::Response::builder()
            .status(poem::http::StatusCode::from_u16(s).expect("status"))
            .header("retry-after", secs.to_string())
            .body("scripted"),
        Some(Reply::Endless(s)) => poem::Response::builder()
            .status(poem::http::StatusCode::from_u16(s).expect("status"))
            .body(poem::Body::from_bytes_stream(futures::stream::repeat_with(
                || Ok::<_, std::io::Error>(vec![b'x'; 8192]),
            ))),
        Some(Reply::Redirect) => poem::Response::builder()
            .status(poem::http::StatusCode::TEMPORARY_REDIRECT)
            .header("location", "/hook")
            .body("moved"),
        _ => poem::Response::builder().body("ok"),
    }
}

impl TestReceiver {
    /// Starts a receiver on a free loopback port.
    pub async fn start() -> Self {
        use poem::{
            EndpointExt,
            listener::{Acceptor, Listener},
        };
        let state = std::sync::Arc::new(ReceiverState::default());
        let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind receiver");
        let port = acceptor
            .local_addr()
            .into_iter()
            .find_map(|a| a.as_socket_addr().map(|s| s.port()))
            .expect("port");
        let app = poem::Route::new()
            .at("/hook", poem::post(receive))
            .data(state.clone());
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
        Self {
            state,
            url: format!("http://127.0.0.1:{port}/hook"),
            port,
        }
    }

    /// Queues replies for the next requests.
    pub fn script(&self, replies: &[Reply]) {
        self.state
            .script
            .lock()
            .expect("lock")
            .extend(replies.iter().copied());
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }

    /// Waits until at least `n` requests arrived (bounded by `limit`), and returns them all.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        eventually(limit, || {
            let got = self.received();
            async move { (got.len() >= n).then_some(got) }
        })
        .await
    }
}
