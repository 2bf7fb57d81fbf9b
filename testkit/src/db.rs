//! Per-test databases on the three real engines the `Store` seam supports.
//!
//! SQLite gets a file in a temporary directory. PostgreSQL and MariaDB/MySQL get a fresh database
//! created through an admin connection (`ANTCODE_TEST_POSTGRES_URL`, `ANTCODE_TEST_MYSQL_URL`,
//! defaulting to the local trust/root accounts) and dropped again when the test ends, pass or
//! fail. An unreachable server fails the test with a message naming the variable: CI starts the
//! servers, so a missing one is a broken environment, never a reason to skip. Their names start
//! with `ANTCODE_TEST_DB_PREFIX` (default `antcode_t_`), for servers shared with other users.
//! [`fresh_postgres`] makes one that outlives the test, for processes the test starts.

use std::sync::Arc;

use antcode_core::store::sql::SqlStore;
use antcode_core::store::{Store, StoreResult};
use sqlx::Connection;

pub const POSTGRES_ENV: &str = "ANTCODE_TEST_POSTGRES_URL";
pub const MYSQL_ENV: &str = "ANTCODE_TEST_MYSQL_URL";
pub const PREFIX_ENV: &str = "ANTCODE_TEST_DB_PREFIX";
const POSTGRES_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const MYSQL_DEFAULT: &str = "mysql://root@127.0.0.1:3306/";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
    Mysql,
}

/// One database that lives as long as the test.
pub struct TestDb {
    pub engine: Engine,
    /// The URL a `SqlStore` connects to.
    pub url: String,
    /// Admin URL and database name, for the servers (dropped on `Drop`).
    server: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(engine: Engine) -> TestDb {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}/db.sqlite", dir.path().display());
                TestDb {
                    engine,
                    url,
                    server: None,
                    _dir: Some(dir),
                }
            }
            Engine::Postgres | Engine::Mysql => {
                let admin = admin_url(engine);
                let name = format!("{}{}", db_prefix(), uuid::Uuid::new_v4().simple());
                create_database(engine, &admin, &name)
                    .await
                    .unwrap_or_else(|e| panic!("{}", unreachable_message(engine, &admin, &e)));
                TestDb {
                    engine,
                    url: with_database(&admin, &name),
                    server: Some((admin, name)),
                    _dir: None,
                }
            }
        }
    }

    /// Connects (and so migrates) a new store on this database.
    pub async fn try_open(&self) -> StoreResult<SqlStore> {
        SqlStore::connect(&self.url).await
    }

    pub async fn open(&self) -> Arc<dyn Store> {
        Arc::new(self.open_sql().await)
    }

    pub async fn open_sql(&self) -> SqlStore {
        self.try_open()
            .await
            .unwrap_or_else(|e| panic!("connect {:?} store at {}: {e}", self.engine, self.url))
    }

    /// Runs one raw statement on this database, outside the store (to plant bad state).
    pub async fn exec(&self, sql: &str) {
        sqlx::any::install_default_drivers();
        let url = if self.engine == Engine::Sqlite {
            format!("{}?mode=rw", self.url)
        } else {
            self.url.clone()
        };
        let mut conn = sqlx::AnyConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("raw connection to {url}: {e}"));
        sqlx::query(sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
    }

    /// Runs one raw query returning a single 64-bit integer.
    pub async fn scalar(&self, sql: &str) -> i64 {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("raw connection to {}: {e}", self.url));
        let row = sqlx::query(sql)
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        use sqlx::Row;
        let v: i64 = row.try_get(0).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
        v
    }
}

/// A new, empty PostgreSQL database that is kept after the test (processes the test started may
/// still use it while it ends); its URL.
pub async fn fresh_postgres() -> String {
    let mut db = TestDb::new(Engine::Postgres).await;
    db.server = None;
    db.url.clone()
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.server.take() else {
            return;
        };
        let engine = self.engine;
        // Drop runs outside async (maybe while unwinding), so the best-effort DROP gets its own
        // thread and runtime. FORCE ends the pools the test left open on PostgreSQL.
        let sql = match engine {
            Engine::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            _ => format!("DROP DATABASE IF EXISTS {name}"),
        };
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(admin_exec(engine, &admin, &sql)).ok()
        })
        .join();
    }
}

/// The prefix of the databases created here: letters, digits and `_` only, since it is spliced
/// into `CREATE DATABASE`.
fn db_prefix() -> String {
    let prefix = std::env::var(PREFIX_ENV).unwrap_or_else(|_| "antcode_t_".into());
    assert!(
        prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "{PREFIX_ENV}={prefix:?}: use letters, digits and _ only"
    );
    prefix
}

fn admin_url(engine: Engine) -> String {
    let (var, default) = match engine {
        Engine::Postgres => (POSTGRES_ENV, POSTGRES_DEFAULT),
        _ => (MYSQL_ENV, MYSQL_DEFAULT),
    };
    std::env::var(var)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn unreachable_message(engine: Engine, admin: &str, e: &sqlx::Error) -> String {
    let (what, var) = match engine {
        Engine::Postgres => ("PostgreSQL", POSTGRES_ENV),
        _ => ("MySQL/MariaDB", MYSQL_ENV),
    };
    format!(
        "{what} is required for the Store conformance suite but CREATE DATABASE through {admin} \
         failed: {e}. Start the server or point {var} at an admin URL."
    )
}

/// PostgreSQL databases get a natural-language ICU collation (what most installations use, and
/// where punctuation sorts before digits) so the store cannot lean on byte order by accident;
/// servers without ICU get the default. MariaDB databases get the server default charset.
async fn create_database(engine: Engine, admin: &str, name: &str) -> Result<(), sqlx::Error> {
    if engine == Engine::Postgres {
        let icu = format!(
            "CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' \
             LOCALE 'C.UTF-8' ENCODING 'UTF8'"
        );
        if admin_exec(engine, admin, &icu).await.is_ok() {
            return Ok(());
        }
    }
    admin_exec(engine, admin, &format!("CREATE DATABASE {name}")).await
}

async fn admin_exec(engine: Engine, admin: &str, sql: &str) -> Result<(), sqlx::Error> {
    let connect = async {
        match engine {
            Engine::Postgres => {
                let mut c = sqlx::PgConnection::connect(admin).await?;
                sqlx::query(sql).execute(&mut c).await?;
                c.close().await
            }
            _ => {
                let mut c = sqlx::MySqlConnection::connect(admin).await?;
                sqlx::query(sql).execute(&mut c).await?;
                c.close().await
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), connect)
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
}

/// `scheme://auth@host:port/anything?query` → `scheme://auth@host:port/name?query`.
fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[after_scheme..]
        .find('/')
        .map(|i| i + after_scheme)
        .unwrap_or(base.len());
    let mut url = format!("{}/{}", &base[..host_end], name);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}
