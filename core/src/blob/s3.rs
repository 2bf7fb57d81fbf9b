//! [`S3BlobStore`]: blobs as objects in one S3 bucket (AWS, MinIO, moto, any S3 API), under an
//! optional key prefix.
//!
//! Credentials are always explicit ([`S3Config`]): the store never consults the machine's default
//! AWS credential chain, so a test or a misconfigured deployment cannot silently pick up someone
//! else's identity. Large objects stream from and to disk; a file above [`PART_SIZE`] goes up as
//! a multipart upload, a few parts at a time, each read from its offset in the file.

use std::path::Path;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::*;

/// Size of one part of a multipart upload, and the size above which a file is sent in parts.
/// S3 wants parts of at least 5 MiB (except the last) and at most 10,000 of them, so 16 MiB
/// parts carry objects up to ~156 GiB.
pub const PART_SIZE: u64 = 16 * 1024 * 1024;
/// Parts in flight at once. Each streams from disk, so memory stays small whatever the object.
const PARTS_IN_FLIGHT: usize = 4;
const DEFAULT_REGION: &str = "us-east-1";

/// Where and as whom to reach S3.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// `http(s)://host:port` of an S3-compatible server; `None` means AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    /// Address buckets as `endpoint/bucket/key` rather than `bucket.endpoint/key` (MinIO, moto).
    pub path_style: bool,
    pub access_key: String,
    pub secret_key: String,
    /// Temporary credentials (AWS STS) carry a session token as well.
    pub session_token: Option<String>,
    /// Every key is stored as `prefix/key` (no slashes at either end; empty for none).
    pub prefix: String,
}

// Hand-written so a logged config never shows the secret.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// The environment variables [`S3Config::from_env`] reads, first name first; the `MINIO_*` names
/// are the seed deployment's and are accepted so its compose `.env` works unchanged.
pub const ENV_BUCKET: &[&str] = &["ANTCODE_S3_BUCKET", "MINIO_BUCKET"];
pub const ENV_ENDPOINT: &[&str] = &["ANTCODE_S3_ENDPOINT", "MINIO_ENDPOINT"];
pub const ENV_REGION: &[&str] = &["ANTCODE_S3_REGION", "MINIO_REGION"];
pub const ENV_PATH_STYLE: &[&str] = &["ANTCODE_S3_PATH_STYLE"];
pub const ENV_SECURE: &[&str] = &["ANTCODE_S3_SECURE", "MINIO_SECURE"];
pub const ENV_ACCESS_KEY: &[&str] = &[
    "ANTCODE_S3_ACCESS_KEY",
    "MINIO_ACCESS_KEY",
    "MINIO_ROOT_USER",
];
pub const ENV_SECRET_KEY: &[&str] = &[
    "ANTCODE_S3_SECRET_KEY",
    "MINIO_SECRET_KEY",
    "MINIO_ROOT_PASSWORD",
];
pub const ENV_SESSION_TOKEN: &[&str] = &["ANTCODE_S3_SESSION_TOKEN"];
pub const ENV_PREFIX: &[&str] = &["ANTCODE_S3_PREFIX"];

impl S3Config {
    /// Reads the whole configuration from the process environment (see the `ENV_*` lists).
    pub fn from_env() -> BlobResult<S3Config> {
        S3Config::from_vars(|name| std::env::var(name).ok(), None, None)
    }

    /// `s3://BUCKET[/prefix]`: bucket and prefix from the URL, everything else from the
    /// environment.
    pub fn from_url(url: &str) -> BlobResult<S3Config> {
        S3Config::from_url_with(url, |name| std::env::var(name).ok())
    }

    /// [`S3Config::from_url`] with the variables looked up through `lookup` (tests, embedding).
    pub fn from_url_with(
        url: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> BlobResult<S3Config> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            BlobError::Config(format!("{url:?} is not an s3://BUCKET[/prefix] url"))
        })?;
        let (bucket, prefix) = match rest.split_once('/') {
            Some((bucket, prefix)) => (bucket, Some(prefix.to_string())),
            None => (rest, None),
        };
        S3Config::from_vars(lookup, Some(bucket.to_string()), prefix)
    }

    /// Builds a config from variables found by `lookup`; `bucket` and `prefix`, when given,
    /// take the place of their variables.
    pub fn from_vars(
        lookup: impl Fn(&str) -> Option<String>,
        bucket: Option<String>,
        prefix: Option<String>,
    ) -> BlobResult<S3Config> {
        let get = |names: &[&str]| {
            names.iter().find_map(|n| {
                lookup(n)
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
            })
        };
        let flag = |names: &[&'static str]| -> BlobResult<Option<bool>> {
            match get(names) {
                None => Ok(None),
                Some(v) => parse_bool(&v).map(Some).ok_or_else(|| {
                    BlobError::Config(format!("{} must be true or false, not {v:?}", names[0]))
                }),
            }
        };
        let missing =
            |names: &[&str]| BlobError::Config(format!("{} is not set", names.join(" or ")));

        let bucket = bucket
            .or_else(|| get(ENV_BUCKET))
            .ok_or_else(|| missing(ENV_BUCKET))?;
        let endpoint = match get(ENV_ENDPOINT) {
            None => None,
            // MinIO's convention is a bare host:port plus a "secure" flag.
            Some(e) if !e.contains("://") => {
                let scheme = if flag(ENV_SECURE)?.unwrap_or(false) {
                    "https"
                } else {
                    "http"
                };
                Some(format!("{scheme}://{e}"))
            }
            Some(e) => Some(e),
        };
        // A custom endpoint is nearly always MinIO-like, where virtual-host buckets do not resolve.
        let path_style = flag(ENV_PATH_STYLE)?.unwrap_or(endpoint.is_some());
        let config = S3Config {
            bucket,
            region: get(ENV_REGION).unwrap_or_else(|| DEFAULT_REGION.to_string()),
            path_style,
            access_key: get(ENV_ACCESS_KEY).ok_or_else(|| missing(ENV_ACCESS_KEY))?,
            secret_key: get(ENV_SECRET_KEY).ok_or_else(|| missing(ENV_SECRET_KEY))?,
            session_token: get(ENV_SESSION_TOKEN),
            prefix: prefix.or_else(|| get(ENV_PREFIX)).unwrap_or_default(),
            endpoint,
        };
        config.validated()
    }

    /// Checks the bucket name and endpoint and normalises the prefix.
    pub fn validated(mut self) -> BlobResult<S3Config> {
        let b = &self.bucket;
        let bucket_ok = (3..=63).contains(&b.len())
            && b.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && b.starts_with(|c: char| c.is_ascii_alphanumeric())
            && b.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !bucket_ok {
            return Err(BlobError::Config(format!(
                "S3 bucket name {b:?} is invalid (3-63 of a-z, 0-9, '-', '.')"
            )));
        }
        if let Some(e) = &self.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(BlobError::Config(format!(
                    "{} {e:?} must start with http:// or https://",
                    ENV_ENDPOINT[0]
                )));
            }
        }
        self.prefix = self.prefix.trim_matches('/').to_string();
        if !self.prefix.is_empty() && valid_key(&self.prefix).is_err() {
            return Err(BlobError::Config(format!(
                "S3 key prefix {:?} is invalid ({}-style path segments only)",
                self.prefix, "a/b-c.d"
            )));
        }
        Ok(self)
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

pub struct S3BlobStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    /// For error messages: where the bucket lives.
    place: String,
}

impl S3BlobStore {
    /// Builds the client and checks that the bucket is reachable with these credentials, so a
    /// wrong endpoint, key or bucket fails at start with a message that names it.
    pub async fn connect(cfg: S3Config) -> BlobResult<S3BlobStore> {
        let store = S3BlobStore::new(cfg)?;
        store.check().await?;
        Ok(store)
    }

    /// Builds the client without any network call.
    pub fn new(cfg: S3Config) -> BlobResult<S3BlobStore> {
        let cfg = cfg.validated()?;
        let credentials = Credentials::new(
            cfg.access_key.clone(),
            cfg.secret_key.clone(),
            cfg.session_token.clone(),
            None,
            "antcode-config",
        );
        let builder = aws_smithy_http_client::Builder::new();
        // A plain-HTTP endpoint (a local test server) needs no TLS stack and no root store.
        let http = match &cfg.endpoint {
            Some(e) if e.starts_with("http://") => builder.build_http(),
            _ => builder
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        };
        let mut conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(cfg.path_style)
            .http_client(http)
            // Checksums only where S3 demands them: many S3-compatible servers reject the
            // aws-chunked trailing checksums the SDK would otherwise send on every upload.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_secs(120))
                    .build(),
            );
        if let Some(endpoint) = &cfg.endpoint {
            conf = conf.endpoint_url(endpoint);
        }
        let place = format!(
            "bucket {:?} at {}",
            cfg.bucket,
            cfg.endpoint.as_deref().unwrap_or("AWS")
        );
        Ok(S3BlobStore {
            client: aws_sdk_s3::Client::from_conf(conf.build()),
            bucket: cfg.bucket,
            prefix: cfg.prefix,
            place,
        })
    }

    /// Fails unless the bucket exists and these credentials may use it.
    pub async fn check(&self) -> BlobResult<()> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => {
                Err(BlobError::Config(format!("{} does not exist", self.place)))
            }
            Err(e) => Err(BlobError::Backend(format!(
                "cannot use {}: {}",
                self.place,
                DisplayErrorContext(&e)
            ))),
        }
    }

    /// Creates the bucket unless it is already there (dev setups and tests; production buckets
    /// are made by whoever owns the account).
    pub async fn create_bucket_if_missing(&self) -> BlobResult<()> {
        if self.check().await.is_ok() {
            return Ok(());
        }
        let mut req = self.client.create_bucket().bucket(&self.bucket);
        let region = self
            .client
            .config()
            .region()
            .map(|r| r.as_ref().to_string());
        // us-east-1 is the one region that must not be named as a location constraint.
        if let Some(region) = region.filter(|r| r != DEFAULT_REGION) {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        match req.send().await {
            Ok(_) => Ok(()),
            // Someone else created it in the meantime: fine if we may use it.
            Err(_) if self.check().await.is_ok() => Ok(()),
            Err(e) => Err(BlobError::Backend(format!(
                "create {}: {}",
                self.place,
                DisplayErrorContext(&e)
            ))),
        }
    }

    fn object_key(&self, key: &str) -> BlobResult<String> {
        valid_key(key)?;
        Ok(if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        })
    }

    fn backend<E>(&self, op: &str, key: &str, e: SdkError<E>) -> BlobError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        BlobError::Backend(format!(
            "{op} {key:?} in {}: {}",
            self.place,
            DisplayErrorContext(&e)
        ))
    }

    /// Maps "no such object" to [`BlobError::NotFound`] and anything else (including a missing
    /// bucket, which is a configuration problem, not a missing blob) to a backend error.
    fn read_error<E>(&self, op: &str, key: &str, e: SdkError<E>) -> BlobError
    where
        E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    {
        let no_bucket = e.code() == Some("NoSuchBucket");
        if !no_bucket && (e.code() == Some("NoSuchKey") || status(&e) == Some(404)) {
            BlobError::NotFound(key.to_string())
        } else {
            self.backend(op, key, e)
        }
    }

    async fn put_multipart(
        &self,
        key: &str,
        object: &str,
        path: &Path,
        size: u64,
    ) -> BlobResult<()> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(object)
            .send()
            .await
            .map_err(|e| self.backend("start multipart upload of", key, e))?;
        let upload_id = upload
            .upload_id()
            .ok_or_else(|| {
                BlobError::Backend(format!("no upload id for {key:?} in {}", self.place))
            })?
            .to_string();
        let parts = size.div_ceil(PART_SIZE);
        let result: BlobResult<Vec<CompletedPart>> = futures::stream::iter(0..parts)
            .map(|i| {
                let upload_id = upload_id.as_str();
                async move {
                    let offset = i * PART_SIZE;
                    let len = PART_SIZE.min(size - offset);
                    let body = ByteStream::read_from()
                        .path(path)
                        .offset(offset)
                        .length(Length::Exact(len))
                        .build()
                        .await
                        .map_err(|e| BlobError::Io(std::io::Error::other(e)))?;
                    let part_number = i as i32 + 1;
                    let done = self
                        .client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(object)
                        .upload_id(upload_id)
                        .part_number(part_number)
                        .content_length(len as i64)
                        .body(body)
                        .send()
                        .await
                        .map_err(|e| self.backend("upload part of", key, e))?;
                    Ok(CompletedPart::builder()
                        .part_number(part_number)
                        .set_e_tag(done.e_tag().map(str::to_string))
                        .build())
                }
            })
            .buffered(PARTS_IN_FLIGHT)
            .try_collect()
            .await;
        let completed = match result {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(object)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.backend("complete multipart upload of", key, e)),
            Err(e) => Err(e),
        };
        if completed.is_err() {
            // Uploaded parts are billed until aborted; a failure to abort only leaves garbage
            // that a bucket lifecycle rule cleans up, so it is logged, not returned.
            if let Err(e) = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(object)
                .upload_id(&upload_id)
                .send()
                .await
            {
                tracing::warn!(key, error = %DisplayErrorContext(&e), "abort multipart upload failed");
            }
        }
        completed
    }
}

fn status<E>(e: &SdkError<E>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// Counts and times one S3 call by operation and outcome (`ok`, `not_found`, `error`).
fn record<T>(op: &'static str, started: Instant, result: &BlobResult<T>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(BlobError::NotFound(_)) => "not_found",
        Err(_) => "error",
    };
    metrics::counter!("antcode_blob_requests_total", "backend" => "s3", "op" => op, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("antcode_blob_request_duration_seconds", "backend" => "s3", "op" => op)
        .record(started.elapsed().as_secs_f64());
}

/// Runs one operation, recording its duration and outcome under `op`.
async fn timed<T>(
    op: &'static str,
    operation: impl std::future::Future<Output = BlobResult<T>>,
) -> BlobResult<T> {
    let started = Instant::now();
    let result = operation.await;
    record(op, started, &result);
    result
}

impl S3BlobStore {
    /// The body of `key`'s object, not read yet.
    async fn object_body(&self, key: &str) -> BlobResult<ByteStream> {
        let object = self.object_key(key)?;
        let resp = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&object)
            .send()
            .await
            .map_err(|e| self.read_error("get", key, e))?;
        Ok(resp.body)
    }

    /// Stores `body`, `size` bytes long, as `key`'s object in one request.
    async fn put_body(&self, key: &str, size: u64, body: ByteStream) -> BlobResult<()> {
        let object = self.object_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&object)
            .content_length(size as i64)
            .body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.backend("put", key, e))
    }

    /// `Ok(true)` when `op` succeeded, `Ok(false)` when the key was missing, else the error.
    fn found<T, E>(&self, op: &str, key: &str, sent: Result<T, SdkError<E>>) -> BlobResult<bool>
    where
        E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    {
        match sent {
            Ok(_) => Ok(true),
            Err(e) => match self.read_error(op, key, e) {
                BlobError::NotFound(_) => Ok(false),
                other => Err(other),
            },
        }
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, data: Bytes) -> BlobResult<()> {
        let size = data.len() as u64;
        timed("put", self.put_body(key, size, ByteStream::from(data))).await
    }

    async fn get(&self, key: &str) -> BlobResult<Bytes> {
        timed("get", async {
            let body = self
                .object_body(key)
                .await?
                .collect()
                .await
                .map_err(|e| BlobError::Io(std::io::Error::other(e)))?;
            Ok(body.into_bytes())
        })
        .await
    }

    async fn exists(&self, key: &str) -> BlobResult<bool> {
        timed("exists", async {
            let object = self.object_key(key)?;
            let sent = self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(&object)
                .send()
                .await;
            self.found("head", key, sent)
        })
        .await
    }

    async fn delete(&self, key: &str) -> BlobResult<()> {
        timed("delete", async {
            let object = self.object_key(key)?;
            let sent = self
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(&object)
                .send()
                .await;
            // S3 answers 204 for a missing key already; some servers say 404, the same here.
            self.found("delete", key, sent).map(|_| ())
        })
        .await
    }

    async fn put_file(&self, key: &str, path: &Path) -> BlobResult<u64> {
        timed("put_file", async {
            let size = tokio::fs::metadata(path).await?.len();
            if size > PART_SIZE {
                let object = self.object_key(key)?;
                self.put_multipart(key, &object, path, size).await?;
            } else {
                let body = ByteStream::read_from()
                    .path(path)
                    .length(Length::Exact(size))
                    .build()
                    .await
                    .map_err(|e| BlobError::Io(std::io::Error::other(e)))?;
                self.put_body(key, size, body).await?;
            }
            Ok(size)
        })
        .await
    }

    async fn get_to_file(&self, key: &str, path: &Path) -> BlobResult<u64> {
        timed("get_to_file", async {
            let reader = self.get_stream(key).await?;
            Ok(write_file_atomically(reader, path).await?)
        })
        .await
    }

    async fn get_stream(&self, key: &str) -> BlobResult<BlobReader> {
        let body = self.object_body(key).await?;
        Ok(Box::pin(body.into_async_read()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn url_and_antcode_variables() {
        let cfg = S3Config::from_url_with(
            "s3://my-bucket/team/a/",
            vars(&[
                ("ANTCODE_S3_ENDPOINT", "http://127.0.0.1:9000"),
                ("ANTCODE_S3_ACCESS_KEY", "ak"),
                ("ANTCODE_S3_SECRET_KEY", "sk"),
                ("ANTCODE_S3_BUCKET", "ignored-by-url"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.bucket, "my-bucket");
        assert_eq!(cfg.prefix, "team/a");
        assert_eq!(cfg.region, "us-east-1");
        assert!(cfg.path_style, "a custom endpoint defaults to path-style");
        assert_eq!(cfg.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(
            !format!("{cfg:?}").contains("sk\""),
            "secret in Debug output"
        );
    }

    #[test]
    fn seed_minio_names() {
        let cfg = S3Config::from_vars(
            vars(&[
                ("MINIO_ENDPOINT", "minio:9000"),
                ("MINIO_ROOT_USER", "minioadmin"),
                ("MINIO_ROOT_PASSWORD", "secret"),
                ("MINIO_BUCKET", "antcode"),
                ("ANTCODE_S3_PATH_STYLE", "false"),
            ]),
            None,
            None,
        )
        .unwrap();
        assert_eq!(cfg.endpoint.as_deref(), Some("http://minio:9000"));
        assert_eq!(
            (cfg.access_key.as_str(), cfg.secret_key.as_str()),
            ("minioadmin", "secret")
        );
        assert_eq!(cfg.bucket, "antcode");
        assert!(!cfg.path_style);
        assert!(cfg.prefix.is_empty());
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let err =
            S3Config::from_vars(vars(&[("ANTCODE_S3_BUCKET", "b-1")]), None, None).unwrap_err();
        assert!(err.to_string().contains("ANTCODE_S3_ACCESS_KEY"), "{err}");
        let keys = [
            ("ANTCODE_S3_ACCESS_KEY", "a"),
            ("ANTCODE_S3_SECRET_KEY", "s"),
        ];
        let err = S3Config::from_url_with("s3://Bad_Bucket", vars(&keys)).unwrap_err();
        assert!(err.to_string().contains("Bad_Bucket"), "{err}");
        let err = S3Config::from_url_with("s3://ok-bucket/../x", vars(&keys)).unwrap_err();
        assert!(err.to_string().contains("prefix"), "{err}");
        let with_flag = [keys[0], keys[1], ("ANTCODE_S3_PATH_STYLE", "maybe")];
        let err = S3Config::from_url_with("s3://ok-bucket", vars(&with_flag)).unwrap_err();
        assert!(err.to_string().contains("ANTCODE_S3_PATH_STYLE"), "{err}");
        assert!(S3Config::from_url_with("file:///x", vars(&keys)).is_err());
    }
}
