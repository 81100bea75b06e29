//! TLS to PostgreSQL as every opsloop component connects (`opsloop_connectors::postgres`),
//! against a real PostgreSQL 15 that takes TLS only, with a certificate for `localhost` from a
//! throwaway CA: `sslmode=verify-full` with the CA file succeeds and the server sees TLS; the
//! wrong CA, the wrong host name, no TLS, a missing file are refused saying what to fix; client
//! certificates and SCRAM with channel binding authenticate; the collector works over it.

use opsloop_connectors::Retry;
use opsloop_connectors::collect::postgres::{
    PostgresCollectError, PostgresCollector, PostgresCollectorConfig,
};
use opsloop_connectors::postgres::{PgConnectError, PgDsn, SslMode, connect};
use opsloop_tests::{TestPostgres, TestTls};
use tokio_postgres::Client;

async fn open(dsn: &str) -> Result<Client, PgConnectError> {
    let (client, connection) = connect(dsn).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Whether the server sees this session encrypted, and its TLS version.
async fn ssl_of(client: &Client) -> (bool, String) {
    let row = client
        .query_one(
            "SELECT ssl, coalesce(version, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    (row.get(0), row.get(1))
}

/// The error of a connection that must fail; printed, as what a user would read.
async fn refused(dsn: &str) -> PgConnectError {
    match open(dsn).await {
        Ok(_) => panic!("{dsn} connected"),
        Err(error) => {
            eprintln!("refused: {error}");
            error
        }
    }
}

fn certificates(postgres: &TestPostgres) -> TestTls {
    postgres.tls().expect("a TLS cluster").clone()
}

#[tokio::test]
async fn verify_full_with_the_ca_file_connects_over_tls() {
    let postgres = TestPostgres::start_tls().await.expect("TLS postgres");
    let tls = certificates(&postgres);
    let port = postgres.port();
    let ca = tls.ca_cert();

    let key_value = postgres.tls_connection_string().expect("TLS dsn");
    let dsn = PgDsn::parse(&key_value).expect("parses");
    assert_eq!(dsn.ssl_mode(), SslMode::VerifyFull);
    let client = open(&key_value).await.expect("verify-full connects");
    let (ssl, version) = ssl_of(&client).await;
    assert!(ssl, "the server sees the session encrypted");
    assert!(version.starts_with("TLSv1."), "{version}");

    let url = format!(
        "postgresql://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        ca.display()
    );
    let client = open(&url).await.expect("the URL form connects");
    assert!(ssl_of(&client).await.0);

    // verify-ca checks the chain, not the name: 127.0.0.1 is not in the certificate.
    let client = open(&format!(
        "host=127.0.0.1 port={port} user=postgres sslmode=verify-ca sslrootcert={}",
        ca.display()
    ))
    .await
    .expect("verify-ca connects by address");
    assert!(ssl_of(&client).await.0);

    // require without a CA encrypts and checks nothing; the default (prefer) takes TLS too.
    for mode in ["sslmode=require", ""] {
        let client = open(&format!("host=127.0.0.1 port={port} user=postgres {mode}"))
            .await
            .unwrap_or_else(|error| panic!("{mode:?}: {error}"));
        assert!(ssl_of(&client).await.0, "{mode:?}");
    }
}

#[tokio::test]
async fn a_wrong_ca_a_wrong_host_name_or_no_tls_is_refused_saying_what_to_fix() {
    let postgres = TestPostgres::start_tls().await.expect("TLS postgres");
    let tls = certificates(&postgres);
    let port = postgres.port();

    let other_ca = tls.other_ca_cert();
    let error = refused(&format!(
        "host=localhost port={port} user=postgres sslmode=verify-full sslrootcert={}",
        other_ca.display()
    ))
    .await;
    let message = error.to_string();
    assert!(
        message.contains("not signed by a CA in")
            && message.contains(&other_ca.display().to_string()),
        "{message}"
    );
    assert_eq!(
        error.retry(),
        Retry::Never,
        "a certificate does not fix itself"
    );

    // The certificate is for localhost; 127.0.0.1 is another name.
    let error = refused(&format!(
        "host=127.0.0.1 port={port} user=postgres sslmode=verify-full sslrootcert={}",
        tls.ca_cert().display()
    ))
    .await;
    let message = error.to_string();
    assert!(
        message.contains("not issued for the host \"127.0.0.1\"")
            && message.contains("(it names localhost)")
            && message.contains("verify-ca"),
        "{message}"
    );
    assert_eq!(error.retry(), Retry::Never);

    let error = refused(&format!(
        "host=localhost port={port} user=postgres sslmode=verify-full sslrootcert=/no/such/ca.crt"
    ))
    .await;
    assert!(
        matches!(error, PgConnectError::Tls { .. })
            && error.to_string().contains("cannot read the CA file")
            && error.to_string().contains("/no/such/ca.crt"),
        "{error}"
    );

    // The server takes TLS only: plaintext is refused by its pg_hba.conf.
    let error = refused(&format!(
        "host=127.0.0.1 port={port} user=postgres sslmode=disable"
    ))
    .await;
    assert!(error.to_string().contains("no encryption"), "{error}");

    // A server without TLS, and a mode that needs it.
    let plain = TestPostgres::start().await.expect("postgres");
    let error = refused(&format!("{} sslmode=require", plain.connection_string())).await;
    assert!(
        error.to_string().contains("does not accept TLS")
            && error.to_string().contains("sslmode=prefer"),
        "{error}"
    );
    let client = open(&plain.connection_string())
        .await
        .expect("prefer falls back to plaintext");
    assert!(!ssl_of(&client).await.0);
}

#[tokio::test]
async fn client_certificates_and_scram_with_channel_binding_authenticate_over_tls() {
    let postgres = TestPostgres::start_tls().await.expect("TLS postgres");
    let tls = certificates(&postgres);
    let port = postgres.port();
    let ca = tls.ca_cert();
    let admin = postgres.connect().await.expect("connect");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {cert} LOGIN; CREATE ROLE {scram} LOGIN PASSWORD '{password}'",
            cert = TestTls::CERT_ROLE,
            scram = TestTls::SCRAM_ROLE,
            password = TestTls::SCRAM_PASSWORD,
        ))
        .await
        .expect("roles");
    let as_role = |role: &str| {
        format!(
            "host=localhost port={port} user={role} dbname=postgres sslmode=verify-full \
             sslrootcert={}",
            ca.display()
        )
    };

    let with_certificate = format!(
        "{} sslcert={} sslkey={}",
        as_role(TestTls::CERT_ROLE),
        tls.client_cert().display(),
        tls.client_key().display()
    );
    let client = open(&with_certificate)
        .await
        .expect("the client certificate authenticates");
    let row = client
        .query_one(
            "SELECT current_user::text, client_dn FROM pg_stat_ssl \
             WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("who");
    assert_eq!(row.get::<_, String>(0), TestTls::CERT_ROLE);
    assert!(row.get::<_, String>(1).contains("CN=opsloop_cert"));
    let error = refused(&as_role(TestTls::CERT_ROLE)).await;
    assert!(
        error.to_string().contains("set sslcert and sslkey") && error.retry() == Retry::Never,
        "{error}"
    );

    // SCRAM bound to the server's certificate (tls-server-end-point): `require` fails unless
    // the client computes the binding the server does.
    let scram = format!(
        "{} password={} channel_binding=require",
        as_role(TestTls::SCRAM_ROLE),
        TestTls::SCRAM_PASSWORD
    );
    let client = open(&scram)
        .await
        .expect("SCRAM with channel binding authenticates");
    assert!(ssl_of(&client).await.0);
    let error = refused(&format!("{} password=wrong", as_role(TestTls::SCRAM_ROLE))).await;
    assert!(
        error.to_string().contains("28P01") && error.retry() == Retry::Never,
        "{error}"
    );
}

#[tokio::test]
async fn the_collector_collects_over_verify_full_tls() {
    let postgres = TestPostgres::start_tls().await.expect("TLS postgres");
    let tls = certificates(&postgres);
    let url = |ca: &std::path::Path| {
        format!(
            "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
            postgres.port(),
            ca.display()
        )
    };
    let config = PostgresCollectorConfig::new(url(&tls.ca_cert()));
    let mut collector = PostgresCollector::connect(&config).await.expect("connects");
    assert_eq!(
        collector.entity(),
        format!("localhost:{}/postgres", postgres.port())
    );
    let batch = collector.collect_once(1_000_000).await.expect("collects");
    assert!(
        batch.samples.iter().any(|s| s.name == "pg_max_connections"),
        "{:?}",
        batch.samples
    );
    let admin = postgres.connect().await.expect("connect");
    let encrypted: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'opsloop collect' AND s.ssl",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert_eq!(encrypted, 1, "the collector's session is encrypted");

    let wrong = PostgresCollectorConfig::new(url(&tls.other_ca_cert()));
    let error = PostgresCollector::connect(&wrong)
        .await
        .expect_err("an unknown CA");
    assert!(
        matches!(error, PostgresCollectError::Connect { .. })
            && error.to_string().contains("not signed by a CA in"),
        "{error}"
    );
    assert_eq!(error.retry(), Retry::Never, "the command stops: {error}");
}
