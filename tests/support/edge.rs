//! A plain HTTPS request through the edge (HTTP/2 on the cluster's TLS, the way any REST client
//! would come), for the tests that call the API through it.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// `method path` at the edge `url` (trusting `ca`) with `headers` and `body`: the answer's
/// status and body.
pub async fn request(
    url: &str,
    ca: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, String) {
    use tonic::codegen::{http, Body as _, Service as _};
    let mut channel = Channel::from_shared(url.to_string())
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("{url}{path}"));
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let body = http_body_util::Full::new(bytes::Bytes::from(body.to_string()));
    let req = req.body(tonic::body::Body::new(body)).unwrap();
    let exchange = async {
        std::future::poll_fn(|cx| channel.poll_ready(cx))
            .await
            .unwrap();
        let resp = channel.call(req).await.expect("the edge answers");
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut text = Vec::new();
        while let Some(frame) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
        {
            if let Ok(data) = frame.unwrap().into_data() {
                text.extend_from_slice(&data);
            }
        }
        (status, String::from_utf8_lossy(&text).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .expect("the edge answered within 20 s")
}
