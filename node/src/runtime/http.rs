//! The AdminServer (`/commands`, `/commands/<name>`) and the Prometheus endpoint
//! (`/metrics`) over HTTP/1.1 with hyper. They only move bytes: each request becomes an
//! [`Inbound::Admin`] or [`Inbound::Metrics`] for the driver, whose pipeline answers it
//! from one status snapshot ([`crate::server::admin`]). Real sockets only: not built
//! under madsim.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

use super::connection::Inbound;
use crate::server::admin;

/// HTTP connections served at once per endpoint; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 64;
/// A client that has not sent its request head by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What an HTTP listener serves.
#[derive(Clone)]
pub enum Endpoint {
    /// ZooKeeper's AdminServer: `/commands` under this URL prefix.
    Admin { command_url: String },
    /// Prometheus text format on `/metrics`.
    Metrics,
}

/// Binds `addr` and serves `endpoint` until the returned task is aborted.
pub async fn serve(
    addr: SocketAddr,
    endpoint: Endpoint,
    driver: mpsc::Sender<Inbound>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let endpoint = Arc::new(endpoint);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("HTTP accept on {local} failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let endpoint = endpoint.clone();
            let driver = driver.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let endpoint = endpoint.clone();
                    let driver = driver.clone();
                    async move { Ok::<_, Infallible>(route(&endpoint, req, &driver).await) }
                });
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                drop(permit);
            });
        }
    });
    Ok((local, task))
}

async fn route(
    endpoint: &Endpoint,
    req: Request<Incoming>,
    driver: &mpsc::Sender<Inbound>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    let path = req.uri().path();
    match endpoint {
        Endpoint::Admin { command_url } => {
            let Some(rest) = path.strip_prefix(command_url.as_str()) else {
                return text(StatusCode::NOT_FOUND, "Not Found\n".into());
            };
            let name = rest.trim_matches('/');
            if name.is_empty() {
                return html(admin::list_html(command_url));
            }
            let (reply, answer) = oneshot::channel();
            let inbound = Inbound::Admin {
                name: name.to_string(),
                args: query_args(req.uri().query().unwrap_or("")),
                reply,
            };
            match ask(driver, inbound, answer).await {
                Some(v) => json(&v),
                None => unavailable(),
            }
        }
        Endpoint::Metrics => {
            if path != "/metrics" {
                return text(StatusCode::NOT_FOUND, "Not Found\n".into());
            }
            let (reply, answer) = oneshot::channel();
            match ask(driver, Inbound::Metrics { reply }, answer).await {
                Some(gauges) => match prometheus_text(&gauges) {
                    Ok(body) => {
                        let mut r = text(StatusCode::OK, body);
                        r.headers_mut().insert(
                            CONTENT_TYPE,
                            HeaderValue::from_static(prometheus::TEXT_FORMAT),
                        );
                        r
                    }
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
                },
                None => unavailable(),
            }
        }
    }
}

/// Hands `inbound` to the driver and waits for its answer (`None`: the server stops).
async fn ask<T>(
    driver: &mpsc::Sender<Inbound>,
    inbound: Inbound,
    answer: oneshot::Receiver<T>,
) -> Option<T> {
    driver.send(inbound).await.ok()?;
    answer.await.ok()
}

/// The gauges in Prometheus' text exposition format, through a registry of the
/// `prometheus` crate.
pub fn prometheus_text(gauges: &[(&'static str, f64)]) -> Result<String, prometheus::Error> {
    let registry = prometheus::Registry::new();
    for (name, value) in gauges {
        let g = prometheus::Gauge::new(*name, *name)?;
        g.set(*value);
        registry.register(Box::new(g))?;
    }
    let mut out = String::new();
    prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out)?;
    Ok(out)
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn html(body: String) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::OK, body);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

fn json(v: &serde_json::Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into());
    let mut r = text(StatusCode::OK, body);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn unavailable() -> Response<Full<Bytes>> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is stopping\n".into(),
    )
}

/// A query string's `key=value` pairs, `+`- and percent-decoded as a servlet decodes its
/// parameters; the first value of a key is the one commands read.
fn query_args(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_arguments_are_decoded() {
        assert_eq!(
            query_args("traceMask=306&x=a%2Fb+c&flag&bad=%zz%4"),
            vec![
                ("traceMask".to_string(), "306".to_string()),
                ("x".to_string(), "a/b c".to_string()),
                ("flag".to_string(), String::new()),
                ("bad".to_string(), "%zz%4".to_string()),
            ]
        );
        assert!(query_args("").is_empty());
    }

    #[test]
    fn gauges_come_out_in_prometheus_text_format() {
        let out = prometheus_text(&[("znode_count", 5.0), ("avg_latency", 0.5)]).unwrap();
        assert!(
            out.contains("# TYPE znode_count gauge\nznode_count 5\n"),
            "{out}"
        );
        assert!(out.contains("avg_latency 0.5\n"), "{out}");
    }
}
