//! The Prometheus scrape endpoint of a running opsloop service: `GET /metrics` answers the
//! process registry in the text exposition format, `GET /healthz` answers `ok`, or 503 and
//! what is wrong when the service has said so ([`Health`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::RuntimeError;

/// Content type of the text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a service says about itself on `/healthz`: nothing wrong, or a sentence why not.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<Option<String>>>);

impl Health {
    /// Sets (or, with `None`, clears) the problem `/healthz` reports.
    pub fn set(&self, problem: Option<String>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = problem;
    }

    fn problem(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A service's `/metrics` and `/healthz`, served on their own task until [`stop`](Self::stop).
#[derive(Debug)]
pub struct MetricsServer {
    address: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `listen` and serves `registry` and `health`.
    pub async fn start(
        listen: SocketAddr,
        registry: Registry,
        health: Health,
    ) -> Result<MetricsServer, RuntimeError> {
        let (stop, stopped) = watch::channel(false);
        let (address, task) = serve(listen, Arc::new(registry), health, stopped)
            .await
            .map_err(|error| RuntimeError::Io {
                what: format!("serving /metrics on {listen}"),
                error,
            })?;
        Ok(MetricsServer {
            address,
            stop,
            task,
        })
    }

    /// The bound address (useful when listening on port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops serving and waits for the task.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the /metrics endpoint failed");
        }
    }
}

/// Binds `address` and serves `registry` and `health` until `shutdown` turns true. Returns
/// the bound address and the serving task.
async fn serve(
    address: SocketAddr,
    registry: Arc<Registry>,
    health: Health,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "serving /metrics");
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accepting a /metrics connection failed");
                    continue;
                }
            };
            let registry = Arc::clone(&registry);
            let health = health.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    answer(request, Arc::clone(&registry), health.clone())
                });
                if let Err(error) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, "a /metrics connection ended with an error");
                }
            });
        }
    });
    Ok((bound, task))
}

async fn answer(
    request: Request<Incoming>,
    registry: Arc<Registry>,
    health: Health,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, &registry) {
                Ok(()) => reply(StatusCode::OK, TEXT_FORMAT, text),
                Err(error) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("encoding the metrics failed: {error}\n"),
                ),
            }
        }
        (&Method::GET, "/healthz") => match health.problem() {
            None => reply(StatusCode::OK, "text/plain", "ok\n".to_owned()),
            Some(problem) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{problem}\n"),
            ),
        },
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try GET /metrics or GET /healthz\n".to_owned(),
        ),
    };
    Ok(response)
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    fn get(url: String) -> (u16, String) {
        let mut response = ureq::get(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .expect("the endpoint answers");
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().expect("text body");
        (status, body)
    }

    #[tokio::test]
    async fn metrics_are_scraped_over_http_until_shutdown() {
        let mut registry = Registry::default();
        let events = Counter::<u64>::default();
        registry.register("opsloop_events", "Events read", events.clone());
        events.inc_by(7);
        let (stop, stopped) = watch::channel(false);
        let health = Health::default();
        let (address, task) = serve(
            "127.0.0.1:0".parse().expect("address"),
            Arc::new(registry),
            health.clone(),
            stopped,
        )
        .await
        .expect("binds");

        let (status, body) =
            tokio::task::spawn_blocking(move || get(format!("http://{address}/metrics")))
                .await
                .expect("joined");
        assert_eq!(status, 200);
        assert!(body.contains("opsloop_events_total 7"), "{body}");
        let (status, _) =
            tokio::task::spawn_blocking(move || get(format!("http://{address}/nothing")))
                .await
                .expect("joined");
        assert_eq!(status, 404);
        let (status, body) =
            tokio::task::spawn_blocking(move || get(format!("http://{address}/healthz")))
                .await
                .expect("joined");
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        health.set(Some("no partition for 61 s".to_owned()));
        let (status, body) =
            tokio::task::spawn_blocking(move || get(format!("http://{address}/healthz")))
                .await
                .expect("joined");
        assert_eq!((status, body.as_str()), (503, "no partition for 61 s\n"));

        stop.send(true).expect("the server listens");
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("stops on shutdown")
            .expect("no panic");
    }
}
